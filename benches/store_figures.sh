#!/usr/bin/env bash
# Store figures for benches/RESULTS.md: `--level dns` over 1,000,000 rows (unique addresses)
# spread over 50,000 domains, against the lab's unbound (LAB_BENCH_DOMAINS=50000 lab/up
# generates d00001…d50000.bench.test): without a store, with a new (empty) store, and a second
# run answered from that store. Best of 3 for each; every "with a store" round starts from an
# empty store file. Run plain `lab/up` afterwards to go back to the default bench zone.
set -euo pipefail
# PREBOUNCE_BIN=/path/to/prebounce measures that binary instead of the one built here (e.g. an
# older build, for a before/after comparison).
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-/tmp/prebounce-bench}
mkdir -p "$dir"
LAB_BENCH_DOMAINS=50000 lab/up > /dev/null
cargo build --release --quiet --bin prebounce
[ -s "$dir/dns1m.csv" ] || python3 - "$dir/dns1m.csv" <<'PY'
import random, sys
random.seed(7)
with open(sys.argv[1], "w") as f:
    f.write("email\n")
    for i in range(1_000_000):
        f.write("user%07d@d%05d.bench.test\n" % (i, random.randint(1, 50_000)))
PY
bin=${PREBOUNCE_BIN:-${CARGO_TARGET_DIR:-target}/release/prebounce}
args=(verify "$dir/dns1m.csv" --level dns --dns-server 127.77.0.1 --allow-reserved-domains
  --allow-private-mx -o "$dir/storeout" --force -q --progress never)
t() { /usr/bin/time -f "%e" -o "$dir/time.txt" "$@"; cat "$dir/time.txt"; }
"$bin" "${args[@]}" --no-store # warm unbound's cache: every mode then meets the same server
best() { sort -n | head -1; }
nostore=() first=() second=()
for _ in 1 2 3; do
  nostore+=("$(t "$bin" "${args[@]}" --no-store)")
  rm -f "$dir/store.sqlite3" "$dir/store.sqlite3-wal" "$dir/store.sqlite3-shm"
  first+=("$(t "$bin" "${args[@]}" --store "$dir/store.sqlite3")")
  second+=("$(t "$bin" "${args[@]}" --store "$dir/store.sqlite3")")
done
n=$(printf '%s\n' "${nostore[@]}" | best)
f=$(printf '%s\n' "${first[@]}" | best)
s=$(printf '%s\n' "${second[@]}" | best)
echo "no store: ${nostore[*]} (best $n s)"
echo "new store: ${first[*]} (best $f s)"
echo "from the store: ${second[*]} (best $s s)"
awk -v n="$n" -v f="$f" -v s="$s" 'BEGIN {
  printf "store cost: %+.0f%% (target < 25%%); second run %.1fx faster than the first (target >= 5x)\n",
    (f / n - 1) * 100, f / s }'
ls -l "$dir/store.sqlite3"
