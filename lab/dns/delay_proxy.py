#!/usr/bin/env python3
"""A UDP DNS proxy that adds a fixed delay to every query: this kernel has no netem, and the DNS
benchmark needs a resolver with a realistic round trip. Transaction IDs are rewritten so that
thousands of queries from many client ports can share one upstream socket.

Usage: delay_proxy.py LISTEN_IP:PORT UPSTREAM_IP:PORT DELAY_MS"""
import asyncio
import sys


def parse(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


class Proxy:
    def __init__(self, upstream, delay):
        self.upstream = upstream
        self.delay = delay
        self.pending = {}  # proxy id -> (original id bytes, client address)
        self.next_id = 0
        self.listener = None
        self.up = None

    def from_client(self, data, client):
        if len(data) < 12:
            return
        pid = self.next_id
        self.next_id = (self.next_id + 1) & 0xFFFF
        self.pending[pid] = (data[:2], client)
        rewritten = pid.to_bytes(2, "big") + data[2:]
        asyncio.get_running_loop().call_later(self.delay, self.up.sendto, rewritten)

    def from_upstream(self, data):
        if len(data) < 12:
            return
        entry = self.pending.pop(int.from_bytes(data[:2], "big"), None)
        if entry is not None:
            original, client = entry
            self.listener.sendto(original + data[2:], client)


class Side(asyncio.DatagramProtocol):
    def __init__(self, handler):
        self.handler = handler

    def datagram_received(self, data, addr):
        self.handler(data, addr)


async def main():
    listen, upstream, delay_ms = parse(sys.argv[1]), parse(sys.argv[2]), float(sys.argv[3])
    loop = asyncio.get_running_loop()
    proxy = Proxy(upstream, delay_ms / 1000.0)
    proxy.listener, _ = await loop.create_datagram_endpoint(
        lambda: Side(proxy.from_client), local_addr=listen)
    proxy.up, _ = await loop.create_datagram_endpoint(
        lambda: Side(lambda d, _a: proxy.from_upstream(d)), remote_addr=upstream)
    print(f"delay proxy {listen[0]}:{listen[1]} -> {upstream[0]}:{upstream[1]} +{delay_ms:g} ms", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
