#!/usr/bin/env bash
# Scale-out figures (issue #18, benches/RESULTS.md "Scale-out"): the SMTP benchmark's spread list
# (10,000 addresses at 2,000 domains over 50 mail servers, 100 ms round trip, STARTTLS; see
# smtp_figures.sh) verified by one `verify`, then through the queue by 1, 2 and 3 workers on
# their own source addresses (127.77.9.N), with the shared per-server budget and with
# `--per-source`. Wall time from the workers' start to the last one's exit (the mx units
# included), then `collect`. The job's store is the queue's database. Needs the lab (lab/up, root the first time) with its PostgreSQL.
# PREBOUNCE_BIN=/path/to/prebounce measures that binary instead of building one; UNITS=N gives
# each worker --units N (default 8); LISTS="spread", MODES="shared" and WORKERS="1 3" run a
# subset. A second list puts 2,000 addresses on one server, where the shared budget is the
# limit and --per-source lifts it (ONE_SERVER_UNIT=N: its --unit-size, default 100).
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

# One server: 2,000 addresses at q01..q40.queue.test, all served by the lab's Postfix
# (127.77.3.1, no added delay): the per-server budget is the limit, which --per-source lifts.
{
  echo "email"
  for d in $(seq -f '%02g' 1 40); do
    for i in $(seq -f '%04g' 1 40); do echo "user$i@q$d.queue.test"; done
    for i in $(seq 1 10); do echo "nobody$i@q$d.queue.test"; done
  done
} > "$work/one-server.csv"

# through_queue LIST UNIT_SIZE: one verify of LIST, then through the queue.
through_queue() {
  local list=$1 unit_size=$2 name
  name=$(basename "$list" .csv)
  t0=$(date +%s.%N)
  "$bin" verify "$list" -o "$work/single-$name" -q --no-store --no-preflight "${opts[@]}"
  t1=$(date +%s.%N)
  echo "$name, one verify: $(echo "$t1 - $t0" | bc) s; valid/invalid/catch-all/unknown $(counts "$work/single-$name")"
  for mode in ${MODES:-shared per-source}; do
    for n in ${WORKERS:-1 2 3}; do
      db="pbbench_${name//-/_}_${mode//-/_}_${n}_$$"
      dbs+=("$db")
      PGPASSWORD=lab-pg-pass psql -h 127.77.8.1 -U prebounce -d postgres -qc "CREATE DATABASE $db" >/dev/null
      q="$base/$db"
      job=$("$bin" submit "$list" --queue "$q" --unit-size "$unit_size" "${opts[@]}" 2>/dev/null)
      extra=()
      [ "$mode" = per-source ] && extra=(--per-source)
      t0=$(date +%s.%N)
      pids=()
      for i in $(seq 1 "$n"); do
        "$bin" worker --queue "$q" --source-ip "127.77.9.$i" --exit-when-idle -q \
          --units "${UNITS:-8}" "${extra[@]}" &
        pids+=($!)
      done
      for p in "${pids[@]}"; do wait "$p"; done
      t1=$(date +%s.%N)
      out="$work/out-$name-$mode-$n"
      "$bin" collect "$job" --queue "$q" -o "$out" -q
      same=same
      for l in valid invalid catch-all unknown; do
        cmp -s <(sort "$work/single-$name/$l.csv") <(sort "$out/$l.csv") || same=different
      done
      net=$("$bin" status "$job" --queue "$q" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)["network"]
print("%d sessions, %d RCPT" % (s["smtp_sessions"], s["rcpt_commands"]))')
      echo "$name, $mode, $n worker(s), --units ${UNITS:-8}: $(echo "$t1 - $t0" | bc) s; $net; lists $(counts "$out")($same rows as one verify)"
    done
  done
}

for list in ${LISTS:-spread one-server}; do
  case $list in
    spread) through_queue "$work/spread.csv" 250 ;;
    one-server) through_queue "$work/one-server.csv" "${ONE_SERVER_UNIT:-100}" ;;
  esac
done
