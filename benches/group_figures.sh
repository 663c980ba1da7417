#!/usr/bin/env bash
# Reproduces the --group-by figures in benches/RESULTS.md: `prebounce verify --level syntax` on
# a generated 1,000,000-row list whose `source` column has 1,000 distinct values, without and
# with `--group-by source`, best of 3 each (wall seconds and peak RSS). Set BASE_BIN to another
# prebounce binary (e.g. one built from an older commit) to time it on the same file too.
# Needs /usr/bin/time (Debian package "time").
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-/tmp/prebounce-bench}
mkdir -p "$dir"
cargo build --release --quiet --bin prebounce --example gen_list
f="$dir/groups-1000000.csv"
[ -s "$f" ] || ${CARGO_TARGET_DIR:-target}/release/examples/gen_list --rows 1000000 --seed 42 --compact --groups 1000 > "$f"

best() { # best-of-3 wall seconds and peak RSS (KiB) of a command
  local best_t=999999 best_m=0
  for _ in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$dir/time.txt" "$@" > /dev/null 2>&1
    read -r t m < "$dir/time.txt"
    if awk "BEGIN{exit !($t < $best_t)}"; then best_t=$t; best_m=$m; fi
  done
  echo "$best_t $best_m"
}

report() { awk -v n="$1" -v t="$2" -v m="$3" 'BEGIN{printf "%-40s %.2f s  peak RSS %.1f MB\n", n, t, m/1024}'; }
if [ -n "${BASE_BIN:-}" ]; then
  read -r t m < <(best "$BASE_BIN" verify "$f" --level syntax --force -q)
  report "$BASE_BIN (no report.html)" "$t" "$m"
fi
read -r t0 m0 < <(best target/release/prebounce verify "$f" --level syntax --force -q --no-store)
report "without --group-by" "$t0" "$m0"
read -r t1 m1 < <(best target/release/prebounce verify "$f" --level syntax --force -q --no-store --group-by source)
report "with --group-by source (1,000 values)" "$t1" "$m1"
awk -v a="$t0" -v b="$t1" 'BEGIN{printf "grouping adds %.1f %%\n", (b/a-1)*100}'
