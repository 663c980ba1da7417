#!/usr/bin/env bash
# The SMTP probe benchmark (issue: 1,000 addresses over 10 domains that share one mail server,
# 20 % unknown, behind a 100 ms round trip): the lab's real Postfix behind
# lab/smtp/delay_tcp_proxy.py (50 ms each way), probed once with
# the default settings and once one address per session without pipelining (what the
# best-known open-source verifier does). Prints wall time, sessions and RCPT commands as
# prebounce counts them and as Postfix logged them, and the most connections open at once as
# the proxy saw them.
# Usage: benches/smtp_figures.sh   (as root: lab/up installs what is missing)
set -euo pipefail
# PREBOUNCE_BIN=/path/to/prebounce measures that binary instead of the one built here (e.g. an
# older build, for a before/after comparison).
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
lab_dir=${PREBOUNCE_LAB_DIR:-$repo/target/lab}
maillog=$lab_dir/postfix/maillog
proxylog=$lab_dir/smtp-delay-proxy.log
lab/up >/dev/null
cargo build --release --quiet
bin=${PREBOUNCE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/prebounce}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 80 existing and 20 unknown mailboxes at each of bench01..bench10.smtpbench.test, all served
# by one MX host (the proxy at 127.77.4.1), so the per-host limits apply to the whole run.
{
  echo "email,vendor"
  for d in $(seq -f '%02g' 1 10); do
    for i in $(seq -f '%04g' 1 80); do echo "user$i@bench$d.smtpbench.test,v$d"; done
    for i in $(seq -f '%02g' 1 20); do echo "nobody$i@bench$d.smtpbench.test,v$d"; done
  done
} > "$work/list.csv"

run() {
  local name=$1; shift
  local before proxy_before
  before=$(wc -l < "$maillog")
  proxy_before=$(wc -l < "$proxylog")
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" verify "$work/list.csv" --out "$work/$name" --force --quiet --no-store --no-preflight \
    --level smtp --from probe@sender.test --allow-reserved-domains --allow-private-mx \
    --dns-server 127.77.0.1 --greylist-wait 6s "$@"
  t1=$(date +%s.%N)
  local server_sessions server_rcpts most_open
  most_open=$(tail -n +"$((proxy_before + 1))" "$proxylog" | awk '$1 == "open" && $2 > m {m = $2} END {print m + 0}')
  # The normal listener logs one "connect from" per session and one INFO line per RCPT.
  server_sessions=$(tail -n +"$((before + 1))" "$maillog" | grep -c 'postfix/normal/smtpd.*: connect from' || true)
  server_rcpts=$(tail -n +"$((before + 1))" "$maillog" | grep -c 'postfix/normal/smtpd.*info: RCPT from' || true)
  python3 - "$work/$name/summary.json" "$name" "$t0" "$t1" "$server_sessions" "$server_rcpts" "$most_open" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
name, t0, t1, ss, sr, mo = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
m = s["smtp"]
print(f"{name:<28} {t1 - t0:8.2f} s  sessions {m['sessions']:>5} (postfix {ss:>5})  "
      f"RCPT {m['rcpt_commands']:>5} (postfix {sr:>5})  at once {mo:>2}  "
      f"valid {s['status']['valid']} invalid {s['status']['invalid']} unknown {s['status']['unknown']}")
PY
}

echo "1,000 addresses (20 % unknown), 10 domains, one MX host behind a 100 ms round trip"
run default
run one-per-session --rcpt-per-session 1 --no-pipelining
echo "lower bound on sessions: ceil(200 unknown / 9 refusals per connection) = 23"
