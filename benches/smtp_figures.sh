#!/usr/bin/env bash
# The SMTP probe benchmark (issue 16): the lab's real Postfix behind lab/smtp/delay_tcp_proxy.py
# (50 ms each way, a 100 ms round trip), at default settings: 1,000 addresses (20 % unknown)
# over 10 domains that share one mail server, in plain text and with STARTTLS, and 10,000
# addresses over 2,000 domains spread over 50 servers. Prints wall time, connections and RCPT
# commands as prebounce counts them and as Postfix logged them, sessions run on kept
# connections, resumed TLS sessions, and the most connections open at once to one server as
# the proxy saw them.
# Usage: benches/smtp_figures.sh   (as root: lab/up installs what is missing; BASELINE=1 adds the
# slow one-address-per-connection run)
set -euo pipefail
# PREBOUNCE_BIN=/path/to/prebounce measures that binary instead of the one built here (e.g. an
# older build, for a before/after comparison).
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
lab_dir=${PREBOUNCE_LAB_DIR:-$repo/target/lab}
maillog=$lab_dir/postfix/maillog
lab/up >/dev/null
# PREBOUNCE_BIN set: that binary is measured, nothing is built.
[ -n "${PREBOUNCE_BIN:-}" ] || cargo build --release --quiet
bin=${PREBOUNCE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/prebounce}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 80 existing and 20 unknown mailboxes at each of 10 domains, all served by one MX host, so
# the per-server limits apply to the whole run: bench01..10.smtpbench.test through the proxy
# at 127.77.4.1 to the plain listener, tls01..10.smtpbench.test through 127.77.4.2 to the
# STARTTLS listener (as most servers in the field).
for prefix in bench tls; do
  {
    echo "email,vendor"
    for d in $(seq -f '%02g' 1 10); do
      for i in $(seq -f '%04g' 1 80); do echo "user$i@$prefix$d.smtpbench.test,v$d"; done
      for i in $(seq -f '%02g' 1 20); do echo "nobody$i@$prefix$d.smtpbench.test,v$d"; done
    done
  } > "$work/$prefix.csv"
done
# 10,000 addresses over 2,000 domains spread over 50 servers (127.77.4.10-59, STARTTLS), 4
# existing and 1 unknown at each domain.
{
  echo "email"
  for d in $(seq -f '%04g' 1 2000); do
    for i in 1 2 3 4; do echo "user000$i@d$d.spread.test"; done
    echo "nobody$d@d$d.spread.test"
  done
} > "$work/spread.csv"

# run NAME LIST LISTENER PROXYLOG [verify options]
run() {
  local name=$1 list=$2 listener=$3 proxylog=$4; shift 4
  local before proxy_before
  before=$(wc -l < "$maillog")
  proxy_before=$(wc -l < "$proxylog")
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" verify "$list" --out "$work/$name" --force --quiet --no-store --no-preflight \
    --level smtp --from probe@sender.test --allow-reserved-domains --allow-private-mx \
    --dns-server 127.77.0.1 --greylist-wait 6s "$@"
  t1=$(date +%s.%N)
  local server_sessions server_rcpts most_open
  # The most connections open at once to one server address, as the proxy counted them (its
  # lines are "open N" or, with several listen addresses, "open N address").
  most_open=$(tail -n +"$((proxy_before + 1))" "$proxylog" | awk '$1 == "open" && $2 > m {m = $2} END {print m + 0}')
  # The listener logs one "connect from" per connection and one INFO line per RCPT.
  server_sessions=$(tail -n +"$((before + 1))" "$maillog" | grep -c "postfix/$listener/smtpd.*: connect from" || true)
  server_rcpts=$(tail -n +"$((before + 1))" "$maillog" | grep -c "postfix/$listener/smtpd.*info: RCPT from" || true)
  python3 - "$work/$name/summary.json" "$name" "$t0" "$t1" "$server_sessions" "$server_rcpts" "$most_open" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
name, t0, t1, ss, sr, mo = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
m = s["smtp"]
print(f"{name:<24} {t1 - t0:8.2f} s  connections {m['sessions']:>5} (postfix {ss:>5})  "
      f"sessions on kept {m['sessions_on_kept_connections']:>5}  TLS resumed {m['tls_resumed']:>4}  "
      f"RCPT {m['rcpt_commands']:>5} (postfix {sr:>5})  most at once per server {mo:>2}  "
      f"valid {s['status']['valid']} invalid {s['status']['invalid']} unknown {s['status']['unknown']}")
PY
}

plain=$lab_dir/smtp-delay-proxy.log spread=$lab_dir/smtp-spread-proxy.log
echo "1,000 addresses (20 % unknown), 10 domains, one MX host behind a 100 ms round trip"
run default "$work/bench.csv" normal "$plain"
run default-starttls "$work/tls.csv" tls "$spread"
echo "  lower bound on connections: ceil(200 unknown / 9 refusals per connection) = 23"
echo "10,000 addresses (20 % unknown), 2,000 domains, 50 MX hosts behind a 100 ms round trip"
run spread-starttls "$work/spread.csv" tls "$spread"
if [ -n "${BASELINE:-}" ]; then
  # One address per connection, no pipelining (what the best-known open-source verifier does).
  run one-per-connection "$work/bench.csv" normal "$plain" --rcpt-per-session 1 \
    --rcpt-per-connection 1 --no-pipelining
fi
