#!/usr/bin/env python3
"""Seconds from SIGINT to exit (issue #14 item 5), for benches/RESULTS.md.

Usage: python3 benches/signal_figures.py [PREBOUNCE_BINARY]   (default target/release/prebounce)

Three waits the signal must cut short, each signalled once the work is under way:
  dns    -- lookups at a resolver that never answers (a UDP socket here; --dns-timeout 120s)
  stdin  -- a pipe that stays open after 5,000 rows
  smtp   -- a session at a mail server that accepts and never speaks: alldead.smtp.test's second
            MX, 127.77.3.98:25, where nothing listens in the lab, is bound here (needs the lab
            up, `lab/up`, and root for port 25; skipped otherwise)
Runs in a temporary folder; prints one line per case: exit code and seconds.
"""
import os, socket, subprocess, sys, tempfile, time

binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/prebounce")
work = tempfile.mkdtemp(prefix="prebounce-signals-")
os.chdir(work)
common = ["--store", "store.sqlite3", "--out", "out", "--force", "--progress", "never"]


def stop(p, case):
    t = time.monotonic()
    p.send_signal(2)
    try:
        p.wait(timeout=200)
        print(f"{case}: exit {p.returncode} after {time.monotonic() - t:.3f} s")
    except subprocess.TimeoutExpired:
        p.kill()
        print(f"{case}: still running 200 s after the signal")


# dns
silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent.bind(("127.0.0.1", 0))
silent.settimeout(60)
with open("list.csv", "w") as f:
    f.write("email\n" + "".join(f"a@d{i}.prebounce-signal.net\n" for i in range(50)))
p = subprocess.Popen([binary, "verify", "list.csv", "--level", "dns", "--dns-server",
                      f"127.0.0.1:{silent.getsockname()[1]}", "--dns-timeout", "120s", *common],
                     stderr=subprocess.DEVNULL)
silent.recvfrom(512)
stop(p, "dns (silent resolver)")

# stdin
p = subprocess.Popen([binary, "verify", "-", "--level", "syntax", *common],
                     stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
p.stdin.write(b"email\n" + b"".join(b"u%d@example.org\n" % i for i in range(5000)))
p.stdin.flush()
time.sleep(1)
stop(p, "stdin (pipe left open)")

# smtp
try:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.77.3.98", 25))
    server.listen(16)
except OSError as e:
    print(f"smtp (silent server): skipped ({e})")
    sys.exit(0)
with open("smtp.csv", "w") as f:
    f.write("email\nalice@alldead.smtp.test\nbob@alldead.smtp.test\n")
p = subprocess.Popen([binary, "verify", "smtp.csv", "--level", "smtp", "--from",
                      "signals@prebounce.test", "--dns-server", "127.77.0.1",
                      "--allow-reserved-domains", "--allow-private-mx", *common],
                     stderr=subprocess.DEVNULL)
server.settimeout(60)
held, _ = server.accept()
stop(p, "smtp (silent server)")
