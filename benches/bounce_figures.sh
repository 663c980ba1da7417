#!/usr/bin/env bash
# Bounce import at scale (issue #17): an mbox of 100,000 bounce messages generated from the
# labelled corpus (tests/data/bounces/eml, cycled, each copy with its own Message-ID so every
# record is new), imported with --dry-run --json and into a fresh store; prints seconds, peak
# RSS and messages per second. Usage: bash benches/bounce_figures.sh [MESSAGES]
# Environment: PREBOUNCE_BIN (default target/release/prebounce, built if missing), BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
bin=${PREBOUNCE_BIN:-${CARGO_TARGET_DIR:-target}/release/prebounce}
work=${BENCH_DIR:-target/bench-bounces}
mkdir -p "$work"
[ -x "$bin" ] || cargo build --release --locked
mbox="$work/bounces-$n.mbox"
if [ ! -s "$mbox" ]; then
  python3 - "$n" "$mbox" <<'PY'
import os, re, sys
n, out = int(sys.argv[1]), sys.argv[2]
root = "tests/data/bounces/eml"
msgs = []
for name in sorted(os.listdir(root)):
    text = open(os.path.join(root, name), "rb").read().replace(b"\r\n", b"\n")
    # mboxrd: quote body lines that start with (quoted) "From ".
    text = re.sub(rb"(?m)^(>*From )", rb">\1", text)
    msgs.append(re.sub(rb"(?mi)^message-id:.*\n(?:[ \t].*\n)*", b"", text, count=1))
with open(out, "wb") as f:
    for i in range(n):
        f.write(b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n")
        f.write(b"Message-ID: <bench-%d@prebounce.test>\n" % i)
        m = msgs[i % len(msgs)]
        f.write(m if m.endswith(b"\n") else m + b"\n")
        f.write(b"\n")
PY
fi
echo "mbox: $mbox, $(du -h "$mbox" | cut -f1), $n messages"
run() {
  local label=$1; shift
  /usr/bin/time -o "$work/time" -f '%e %M' "$@" >/dev/null 2>"$work/stderr"
  local t secs kb
  t=$(tail -1 "$work/time")
  secs=${t% *} kb=${t#* }
  printf '%-28s %7.2f s  %6d MB peak  %8.0f messages/s\n' "$label" "$secs" $((kb / 1024)) \
    "$(echo "$n / $secs" | bc -l)"
}
run "import --dry-run --json" "$bin" bounces import "$mbox" --dry-run --json
rm -f "$work/store.sqlite3"*
run "import into a new store" "$bin" bounces import "$mbox" --store "$work/store.sqlite3"
run "import again (no change)" "$bin" bounces import "$mbox" --store "$work/store.sqlite3"
