#!/usr/bin/env python3
"""A TCP proxy that delays every chunk by a fixed time in each direction: this kernel has no
netem, and the SMTP benchmark needs a mail server with a realistic round trip. With 50 ms each
way a command/reply exchange takes about 100 ms. Each accepted and closed connection is logged
with the number open at that moment ("open 3", "close 2"), so a benchmark can tell the most
connections a client held at once from the server side. With several listen addresses
(comma-separated: one process stands for many mail servers) each line also names the listen
address, and the count is that address's own ("open 3 127.77.4.12"). Order is preserved: each direction is one FIFO
whose chunks are released at arrival time + delay, so delays never add up across chunks.

--source-listen: each upstream connection is made from the address it was accepted on (not
127.0.0.1), so when one upstream stands for many servers it counts each one's connections
apart (Postfix's per-client connection limit applies per server address, as in the field).

Usage: delay_tcp_proxy.py [--source-listen] LISTEN_IP:PORT[,LISTEN_IP:PORT...] UPSTREAM_IP:PORT DELAY_MS_EACH_WAY
(python3 standard library only; loopback addresses only)"""
import asyncio
import sys


def parse(addr):
    host, port = addr.rsplit(":", 1)
    return host.strip("[]"), int(port)


async def pump(reader, writer, delay):
    """Copies reader to writer, each chunk delayed by `delay` seconds from its arrival."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def read():
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((loop.time() + delay, b""))

    async def write():
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    reading = asyncio.ensure_future(read())
    try:
        await write()
    finally:
        reading.cancel()


OPEN = {}
MANY = False


def count(listen, change, word):
    OPEN[listen] = OPEN.get(listen, 0) + change
    suffix = f" {listen}" if MANY else ""
    print(f"{word} {OPEN[listen]}{suffix}", flush=True)


async def handle(client_reader, client_writer, upstream, delay, listen, source):
    count(listen, 1, "open")
    try:
        await relay(client_reader, client_writer, upstream, delay, source)
    finally:
        count(listen, -1, "close")


async def relay(client_reader, client_writer, upstream, delay, source):
    try:
        up_reader, up_writer = await asyncio.open_connection(
            *upstream, local_addr=(source, 0) if source else None)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(pump(client_reader, up_writer, delay),
                             pump(up_reader, client_writer, delay))
    finally:
        for w in (client_writer, up_writer):
            try:
                w.close()
            except OSError:
                pass


async def main():
    global MANY
    args = sys.argv[1:]
    source_listen = args[0] == "--source-listen"
    if source_listen:
        args = args[1:]
    listens = [parse(a) for a in args[0].split(",")]
    upstream, delay_ms = parse(args[1]), float(args[2])
    MANY = len(listens) > 1
    delay = delay_ms / 1000.0
    servers = []
    for ip, port in listens:
        servers.append(await asyncio.start_server(
            lambda r, w, ip=ip: handle(r, w, upstream, delay, ip, ip if source_listen else None),
            ip, port,
            reuse_address=True, backlog=1024))
    print(f"delay tcp proxy {args[0]} -> {upstream[0]}:{upstream[1]} "
          f"+{delay_ms:g} ms each way{' (from each listen address)' if source_listen else ''}",
          flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
