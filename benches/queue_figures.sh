#!/usr/bin/env bash
# Scale-out figures (issue #18, benches/RESULTS.md "Scale-out"): the SMTP benchmark's spread list
# (10,000 addresses at 2,000 domains over 50 mail servers, 100 ms round trip, STARTTLS; see
# smtp_figures.sh) verified by one `verify`, then through the queue by 1, 2 and 3 workers on
# their own source addresses (127.77.9.N), with the shared per-server budget and with
# `--per-source`. Wall time from the workers' start to the last one's exit (the mx units
# included), then `collect`. The job's store is the queue's database. Needs the lab (lab/up, root the first time) with its PostgreSQL.
# PREBOUNCE_BIN=/path/to/prebounce measures that binary instead of building one.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
lab/up >/dev/null
[ -n "${PREBOUNCE_BIN:-}" ] || cargo build --release --quiet
bin=${PREBOUNCE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/prebounce}
admin=$(lab/pg url)
base=${admin%/postgres}
work=$(mktemp -d)
dbs=()
cleanup() {
  for db in "${dbs[@]}"; do
    PGPASSWORD=lab-pg-pass psql -h 127.77.8.1 -U prebounce -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
{
  echo "email"
  for d in $(seq -f '%04g' 1 2000); do
    for i in 1 2 3 4; do echo "user000$i@d$d.spread.test"; done
    echo "nobody$d@d$d.spread.test"
  done
} > "$work/spread.csv"
opts=(--level smtp --from probe@sender.test --allow-reserved-domains --allow-private-mx
  --dns-server 127.77.0.1 --greylist-wait 6s)

counts() { # valid invalid catch-all unknown of an output folder
  for l in valid invalid catch-all unknown; do echo -n "$(($(wc -l < "$1/$l.csv") - 1)) "; done
}

t0=$(date +%s.%N)
"$bin" verify "$work/spread.csv" -o "$work/single" -q --no-store --no-preflight "${opts[@]}"
t1=$(date +%s.%N)
echo "one verify: $(echo "$t1 - $t0" | bc) s; valid/invalid/catch-all/unknown $(counts "$work/single")"

for mode in shared per-source; do
  for n in 1 2 3; do
    db="pbbench_${mode//-/_}_${n}_$$"
    dbs+=("$db")
    PGPASSWORD=lab-pg-pass psql -h 127.77.8.1 -U prebounce -d postgres -qc "CREATE DATABASE $db" >/dev/null
    q="$base/$db"
    job=$("$bin" submit "$work/spread.csv" --queue "$q" --unit-size 250 "${opts[@]}" 2>/dev/null)
    extra=()
    [ "$mode" = per-source ] && extra=(--per-source)
    t0=$(date +%s.%N)
    pids=()
    for i in $(seq 1 "$n"); do
      "$bin" worker --queue "$q" --source-ip "127.77.9.$i" --exit-when-idle -q "${extra[@]}" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    t1=$(date +%s.%N)
    "$bin" collect "$job" --queue "$q" -o "$work/out-$mode-$n" -q
    same=same
    for l in valid invalid catch-all unknown; do
      cmp -s <(sort "$work/single/$l.csv") <(sort "$work/out-$mode-$n/$l.csv") || same=different
    done
    net=$("$bin" status "$job" --queue "$q" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)["network"]
print("%d sessions, %d RCPT" % (s["smtp_sessions"], s["rcpt_commands"]))')
    echo "$mode, $n worker(s): $(echo "$t1 - $t0" | bc) s; $net; lists $(counts "$work/out-$mode-$n")($same rows as one verify)"
  done
done
