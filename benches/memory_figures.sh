#!/usr/bin/env bash
# Peak memory (issue #14 item 7), for benches/RESULTS.md: `/usr/bin/time` peak RSS of
#   - `--level dns` over 1,000,000 distinct addresses spread over 50,000 and over 200,000
#     domains, against the lab's unbound (this script regenerates its bench zone with 200,000
#     domains: LAB_BENCH_DOMAINS=200000 lab/up; run plain `lab/up` afterwards to go back), with
#     no store and with a new store (the default store's behaviour, in a file of its own);
#   - `--level syntax` over 5,000,000 rows holding 1,000,000 and 200,000 distinct addresses,
#     with a new store;
# and from those the growth per distinct domain and per distinct address. One run each (peak
# RSS varies by a few MB between runs; the wall time is shown, not compared).
set -euo pipefail
# PREBOUNCE_BIN=/path/to/prebounce measures that binary instead of the one built here.
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-/tmp/prebounce-bench}
mkdir -p "$dir"
LAB_BENCH_DOMAINS=200000 lab/up > /dev/null
cargo build --release --quiet --bin prebounce
bin=${PREBOUNCE_BIN:-${CARGO_TARGET_DIR:-target}/release/prebounce}

gen() { # gen FILE ROWS DISTINCT DOMAINS: ROWS rows cycling through DISTINCT addresses
  [ -s "$1" ] || python3 - "$@" <<'PY'
import random, sys
path, rows, distinct, domains = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
random.seed(7)
home = [random.randint(1, domains) for _ in range(distinct)]
with open(path, "w") as f:
    f.write("email\n")
    for i in range(rows):
        a = i % distinct
        f.write("user%07d@d%05d.bench.test\n" % (a, home[a]))
PY
}
gen "$dir/dns-1m-50k.csv" 1000000 1000000 50000
gen "$dir/dns-1m-200k.csv" 1000000 1000000 200000
gen "$dir/syntax-5m-1m.csv" 5000000 1000000 200000
gen "$dir/syntax-5m-200k.csv" 5000000 200000 200000

peak() { # peak LABEL ARGS…: prints "LABEL: S s, M MB" and leaves M (MB) in $mb
  rm -f "$dir/mem-store.sqlite3" "$dir/mem-store.sqlite3-wal" "$dir/mem-store.sqlite3-shm"
  local label=$1
  shift
  /usr/bin/time -f "%e %M" -o "$dir/time.txt" "$bin" verify "$@" -o "$dir/memout" --force -q \
    --progress never --allow-reserved-domains --allow-private-mx > /dev/null
  read -r t kb < "$dir/time.txt"
  mb=$(awk -v kb="$kb" 'BEGIN { printf "%.0f", kb / 1024 }')
  echo "$label: $t s, peak RSS $mb MB"
}
dns=(--level dns --dns-server 127.77.0.1)
"$bin" verify "$dir/dns-1m-200k.csv" "${dns[@]}" -o "$dir/memout" --force -q --progress never \
  --allow-reserved-domains --allow-private-mx --no-store # warm unbound's cache
peak "dns, 1M rows / 50k domains, no store" "$dir/dns-1m-50k.csv" "${dns[@]}" --no-store
n50=$mb
peak "dns, 1M rows / 200k domains, no store" "$dir/dns-1m-200k.csv" "${dns[@]}" --no-store
n200=$mb
peak "dns, 1M rows / 50k domains, new store" "$dir/dns-1m-50k.csv" "${dns[@]}" --store "$dir/mem-store.sqlite3"
s50=$mb
peak "dns, 1M rows / 200k domains, new store (target <= 250 MB)" "$dir/dns-1m-200k.csv" "${dns[@]}" --store "$dir/mem-store.sqlite3"
s200=$mb
peak "syntax, 5M rows / 200k distinct addresses, new store" "$dir/syntax-5m-200k.csv" --level syntax --store "$dir/mem-store.sqlite3"
a200=$mb
peak "syntax, 5M rows / 1M distinct addresses, new store (target <= 100 MB)" "$dir/syntax-5m-1m.csv" --level syntax --store "$dir/mem-store.sqlite3"
a1m=$mb
awk -v n50="$n50" -v n200="$n200" -v s50="$s50" -v s200="$s200" -v a200="$a200" -v a1m="$a1m" 'BEGIN {
  printf "growth per distinct domain (dns): %.0f bytes without a store, %.0f bytes with one\n",
    (n200 - n50) * 1048576 / 150000, (s200 - s50) * 1048576 / 150000
  printf "growth per distinct address (syntax, store): %.0f bytes\n", (a1m - a200) * 1048576 / 800000 }'
