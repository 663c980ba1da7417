#!/usr/bin/env python3
"""Checks every SMTP lab listener by hand (after lab/up): one line per check, exit status 1 on
any mismatch. Talks SMTP over raw sockets to loopback addresses only (EHLO, MAIL FROM, RCPT TO,
RSET, QUIT; never DATA), and checks the smtp.test zones with dig @127.77.0.1 when dig exists.

It never connects to the null-MX sentinel (127.77.3.10): that listener must see no session at
all, so it is only checked to be listening (ss). The rate-limit, one-connection and greylist
checks use a random source address in 127.77.250.0/24 and a random sender, so they pass again
when run twice in a row (anvil counts per client address, postgrey per triplet).
Takes about 25 s (greylist delay, tarpit, slow banner, error-limit sleeps).

Usage: lab/smtp/check.py [-v]"""
import random
import re
import shutil
import socket
import string
import subprocess
import sys
import time

VERBOSE = "-v" in sys.argv
FAILED = []
FRESH_IP = f"127.77.250.{random.randint(1, 254)}"


def sender():
    # postgrey folds digits in local parts: a fresh sender must differ in letters.
    return "probe-" + "".join(random.choice(string.ascii_lowercase) for _ in range(10)) + "@sender.example"


def check(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        FAILED.append(name)


class Session:
    def __init__(self, host, port=25, source=None, timeout=30):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = b""
        self.log = []

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """Reads one (possibly multi-line) reply: (code, last line text, all lines)."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        if VERBOSE:
            for l in lines:
                print("    S:", l)
        return int(lines[-1][:3]), lines[-1][4:], lines

    def cmd(self, text):
        if VERBOSE:
            print("    C:", text)
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def start(self, mail_from="probe@sender.example"):
        banner = self.reply()
        self.cmd("EHLO probe.sender.example")
        self.cmd(f"MAIL FROM:<{mail_from}>")
        return banner

    def close(self):
        try:
            self.cmd("RSET")
            self.cmd("QUIT")
        except (OSError, EOFError):
            pass
        self.sock.close()


def expect(name, got, code, pattern=""):
    c, text, _ = got
    check(name, c == code and re.search(pattern, text) is not None, f"{c} {text}")


def rcpt_cases(name, host, domain, cases, source=None):
    s = Session(host, source=source)
    banner = s.start()
    expect(f"{name} banner", banner, 220, r"mx\.lab\.test ESMTP")
    for local, code, pattern in cases:
        expect(f"{name} {local}@{domain}", s.cmd(f"RCPT TO:<{local}@{domain}>"), code, pattern)
    s.close()


UNKNOWN = (550, r"^5\.1\.1 <.*>: Recipient address rejected: User unknown in virtual mailbox table$")
OK = (250, r"^2\.1\.5 Ok$")


def normal(name, host, domain):
    rcpt_cases(name, host, domain, [
        ("alice", *OK), ("erin", *OK), ("user0001", *OK), ("user0200", *OK),
        ("user0000", *UNKNOWN), ("user0201", *UNKNOWN), ("nobody", *UNKNOWN),
        ("full", 452, r"^4\.2\.2 .*Recipient address rejected: Mailbox full$"),
        ("quota", 552, r"^5\.2\.2 .*Recipient address rejected: Mailbox quota exceeded$"),
        ("disabled", 550, r"^5\.2\.1 .*Recipient address rejected: Mailbox disabled"),
        ("blocked", 554, r"^5\.7\.1 .*Recipient address rejected: Access denied$"),
    ])


def main():
    # normal
    normal("normal", "127.77.3.1", "ok.smtp.test")
    s = Session("127.77.3.1")
    s.start()
    expect("normal foreign domain", s.cmd("RCPT TO:<alice@elsewhere.example>"), 554,
           r"^5\.7\.1 <alice@elsewhere\.example>: Relay access denied$")
    s.close()

    # catch-all
    rcpt_cases("catchall", "127.77.3.2", "catchall.smtp.test", [
        ("alice", *OK), ("".join(random.choice(string.ascii_lowercase) for _ in range(12)), *OK),
        ("no.such.person", *OK)])

    # blocklist
    rcpt_cases("blocklist", "127.77.3.4", "blocklist.smtp.test", [
        ("alice", 554, r"^5\.7\.1 <unknown\[127\.0\.0\.1\]>: Client host rejected: Service unavailable; "
                       r"Client host \[127\.0\.0\.1\] blocked using zen\.spamhaus\.example")])

    # greylist: first try 450, unknown 550 at once, retry after the delay 250
    frm = sender()
    s = Session("127.77.3.3")
    s.start(frm)
    expect("greylist first try", s.cmd("RCPT TO:<alice@grey.smtp.test>"), 450,
           r"^4\.2\.0 <alice@grey\.smtp\.test>: Recipient address rejected: Greylisted")
    expect("greylist unknown", s.cmd("RCPT TO:<nobody@grey.smtp.test>"), *UNKNOWN)
    expect("greylist retry too early", s.cmd("RCPT TO:<alice@grey.smtp.test>"), 450, r"Greylisted")
    s.close()
    time.sleep(6)
    s = Session("127.77.3.3")
    s.start(frm)
    expect("greylist retry after 6 s", s.cmd("RCPT TO:<alice@grey.smtp.test>"), *OK)
    s.close()

    # slow banner (postscreen): "220-" at once, the real "220 " about 3 s later
    time.sleep(2.5)  # postscreen_greet_ttl is 1 s (whole seconds): be a new client again
    s = Session("127.77.3.5")
    t0 = time.monotonic()
    first = s.line()
    t1 = time.monotonic() - t0
    rest = s.line()
    t2 = time.monotonic() - t0
    check("slow pre-greeting", first.startswith("220-") and t1 < 0.5, f"{first!r} after {t1:.2f} s")
    check("slow real greeting", rest.startswith("220 ") and t2 >= 2.5, f"{rest!r} after {t2:.2f} s")
    s.cmd("EHLO probe.sender.example")
    s.cmd("MAIL FROM:<probe@sender.example>")
    expect("slow alice@slow.smtp.test", s.cmd("RCPT TO:<alice@slow.smtp.test>"), *OK)
    expect("slow nobody@slow.smtp.test", s.cmd("RCPT TO:<nobody@slow.smtp.test>"), *UNKNOWN)
    s.close()
    # an early talker (speaks before the real 220) is refused at RCPT time
    time.sleep(2.5)
    s = Session("127.77.3.5")
    first = s.line()
    s.sock.sendall(b"EHLO early.example\r\n")
    s.reply()
    s.cmd("MAIL FROM:<probe@sender.example>")
    expect("slow early talker", s.cmd("RCPT TO:<alice@slow.smtp.test>"), 550, r"^5\.5\.1 Protocol error$")
    s.close()

    # tarpit: every RCPT answer takes about 1 s
    s = Session("127.77.3.6")
    s.start()
    for local, (code, pattern) in (("alice", OK), ("nobody", UNKNOWN)):
        t0 = time.monotonic()
        got = s.cmd(f"RCPT TO:<{local}@tarpit.smtp.test>")
        took = time.monotonic() - t0
        check(f"tarpit {local}@tarpit.smtp.test", got[0] == code and re.search(pattern, got[1]) and took >= 0.9,
              f"{got[0]} {got[1]} after {took:.2f} s")
    s.close()

    # oneconn: a second concurrent connection from the same client gets 421
    a = Session("127.77.3.7", source=FRESH_IP)
    a.start()
    b = Session("127.77.3.7", source=FRESH_IP)
    expect("oneconn second connection", b.reply(), 421,
           rf"^4\.7\.0 mx\.lab\.test Error: too many connections from {re.escape(FRESH_IP)}$")
    b.sock.close()
    expect("oneconn first connection still works", a.cmd("RCPT TO:<alice@oneconn.smtp.test>"), *OK)
    a.close()
    time.sleep(0.5)  # anvil learns of the disconnect asynchronously
    c = Session("127.77.3.7", source=FRESH_IP)
    c.start()
    expect("oneconn after the first closed", c.cmd("RCPT TO:<nobody@oneconn.smtp.test>"), *UNKNOWN)
    c.close()

    # ratelimit: 5 recipients per minute per client, the 6th gets 450 4.7.1
    s = Session("127.77.3.8", source=FRESH_IP)
    s.start()
    for i in range(1, 6):
        expect(f"ratelimit rcpt {i}", s.cmd(f"RCPT TO:<user{i:04d}@ratelimit.smtp.test>"), *OK)
    expect("ratelimit rcpt 6", s.cmd("RCPT TO:<user0006@ratelimit.smtp.test>"), 450,
           rf"^4\.7\.1 Error: too many recipients from {re.escape(FRESH_IP)}$")
    s.close()

    # errlimit: Postfix's default limits. Errors 1-10 are answered at once, errors 11-20 after
    # 1 s each (smtpd_error_sleep_time); after the 20th, smtpd sleeps 1 s more, sends an
    # unsolicited 421 and closes. (A client that sends a 21st command meanwhile usually sees a
    # connection reset instead of the 421: Postfix closes with that command unread.)
    s = Session("127.77.3.9")
    s.start()
    t0 = time.monotonic()
    answers, times = [], []
    for i in range(1, 21):
        answers.append(s.cmd(f"RCPT TO:<nosuch{chr(96 + i)}@errlimit.smtp.test>"))
        times.append(time.monotonic() - t0)
    codes = [a[0] for a in answers]
    check("errlimit 20 unknown", codes == [550] * 20 and times[9] < 0.5 and times[19] >= 9.5,
          f"{codes.count(550)} x 550; the 10th after {times[9]:.1f} s, the 20th after {times[19]:.1f} s")
    try:
        got = s.reply()
        took = time.monotonic() - t0
        expect("errlimit unsolicited 421", got, 421, r"^4\.7\.0 mx\.lab\.test Error: too many errors$")
    except (EOFError, OSError) as e:
        check("errlimit unsolicited 421", False, repr(e))
    try:
        s.line()
        check("errlimit disconnects", False, "still connected")
    except (EOFError, OSError):
        check("errlimit disconnects", True, "connection closed after the 421")
    s.sock.close()
    rcpt_cases("errlimit", "127.77.3.9", "errlimit.smtp.test", [("alice", *OK), ("bob", *OK)])

    # IPv6 listener
    if shutil.which("ss") and "[::1]:25 " in subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout:
        normal("normal6", "::1", "v6.smtp.test")
    else:
        check("normal6", True, "skipped: nothing on [::1]:25 (no ::1 on lo)")

    # dead hosts
    for ip in ("127.77.3.99", "127.77.3.98"):
        try:
            Session(ip, timeout=3).sock.close()
            check(f"dead {ip}", False, "connected")
        except ConnectionRefusedError:
            check(f"dead {ip}", True, "connection refused")

    # null-MX sentinel: listening, but never connected to
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    check("nullmx-sentinel listening", "127.77.3.10:25 " in listening, "127.77.3.10:25 (not connected to)")

    # delay proxy: the normal listener, about 50 ms per command round trip
    s = Session("127.77.4.1")
    s.start()
    t0 = time.monotonic()
    got = s.cmd("RCPT TO:<user0042@bench07.smtpbench.test>")
    rtt = time.monotonic() - t0
    check("delay proxy user0042@bench07.smtpbench.test", got[0] == 250 and 0.095 <= rtt < 0.3,
          f"{got[0]} {got[1]} in {rtt * 1000:.0f} ms")
    expect("delay proxy unknown", s.cmd("RCPT TO:<user0201@bench07.smtpbench.test>"), *UNKNOWN)
    s.close()

    dns()


def dig(name, rtype):
    out = subprocess.run(["dig", "@127.77.0.1", "+time=2", "+tries=1", name, rtype],
                         capture_output=True, text=True).stdout
    status = re.search(r"status: (\w+)", out)
    answers = []
    section = False
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            section = True
        elif section and not line.strip():
            section = False
        elif section:
            f = line.split()
            answers.append(" ".join(f[4:]))
    return (status.group(1) if status else "NO-ANSWER"), sorted(answers)


def dns():
    if not shutil.which("dig"):
        check("dns", True, "skipped: no dig (apt-get install bind9-dnsutils)")
        return
    cases = [
        ("ok.smtp.test", "MX", "NOERROR", ["10 mx-normal.smtp.test."]),
        ("mx-normal.smtp.test", "A", "NOERROR", ["127.77.3.1"]),
        ("catchall.smtp.test", "MX", "NOERROR", ["10 mx-catchall.smtp.test."]),
        ("grey.smtp.test", "MX", "NOERROR", ["10 mx-grey.smtp.test."]),
        ("mx-errlimit.smtp.test", "A", "NOERROR", ["127.77.3.9"]),
        ("backup.smtp.test", "MX", "NOERROR", ["10 mx-dead1.smtp.test.", "20 mx-normal.smtp.test."]),
        ("alldead.smtp.test", "MX", "NOERROR", ["10 mx-dead1.smtp.test.", "20 mx-dead2.smtp.test."]),
        ("mx-dead2.smtp.test", "A", "NOERROR", ["127.77.3.98"]),
        ("v6.smtp.test", "MX", "NOERROR", ["10 mx-v6.smtp.test."]),
        ("mx-v6.smtp.test", "AAAA", "NOERROR", ["::1"]),
        ("mx-v6.smtp.test", "A", "NOERROR", []),
        ("implicit.smtp.test", "MX", "NOERROR", []),
        ("implicit.smtp.test", "A", "NOERROR", ["127.77.3.1"]),
        ("nullmx.smtp.test", "MX", "NOERROR", ["0 ."]),
        ("nullmx.smtp.test", "A", "NOERROR", ["127.77.3.10"]),
        ("nomail.smtp.test", "MX", "NOERROR", []),
        ("nomail.smtp.test", "TXT", "NOERROR", ['"no mail here"']),
        ("nosuch.smtp.test", "MX", "NXDOMAIN", []),
        ("dangling.smtp.test", "MX", "NOERROR", ["10 nowhere.smtp.test."]),
        ("nowhere.smtp.test", "A", "NXDOMAIN", []),
        ("x.servfail.test", "MX", "SERVFAIL", []),
        ("bench01.smtpbench.test", "MX", "NOERROR", ["10 mx.smtpbench.test."]),
        ("bench10.smtpbench.test", "MX", "NOERROR", ["10 mx.smtpbench.test."]),
        ("mx.smtpbench.test", "A", "NOERROR", ["127.77.4.1"]),
        # the existing DNS lab is unchanged
        ("ok.lab.test", "MX", "NOERROR", ["10 mx1.ok.lab.test.", "20 mx2.ok.lab.test."]),
    ]
    for name, rtype, status, answers in cases:
        got = dig(name, rtype)
        check(f"dns {name} {rtype}", got == (status, sorted(answers)), f"{got[0]} {got[1]}")


if __name__ == "__main__":
    main()
    print(f"{'all checks passed' if not FAILED else str(len(FAILED)) + ' FAILED: ' + ', '.join(FAILED)}")
    sys.exit(1 if FAILED else 0)
