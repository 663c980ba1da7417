#!/usr/bin/env bash
# Reproduces the figures in benches/RESULTS.md: end-to-end time and peak memory of
# `prebounce verify --level syntax` on generated lists of 1M and 5M rows, the plain csv
# read+write floor on the same file, and python email-validator on the same addresses.
# Best of 5 runs each. Needs /usr/bin/time (Debian package "time") and, for the comparison,
# pip access to install email-validator.
set -euo pipefail
# PREBOUNCE_BIN=/path/to/prebounce measures that binary instead of the one built here (e.g. an
# older build, for a before/after comparison).
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-/tmp/prebounce-bench}
mkdir -p "$dir"
cargo build --release --quiet --bin prebounce --example gen_list --example csv_floor
bin=${PREBOUNCE_BIN:-${CARGO_TARGET_DIR:-target}/release/prebounce}
for rows in 1000000 5000000; do
  [ -s "$dir/list-$rows.csv" ] || ${CARGO_TARGET_DIR:-target}/release/examples/gen_list --rows "$rows" --seed 42 --compact > "$dir/list-$rows.csv"
done

best() { # best-of-5 wall seconds and peak RSS of a command
  local best_t=999999 best_m=0
  for _ in 1 2 3 4 5; do
    rm -rf "$dir/out"
    /usr/bin/time -f "%e %M" -o "$dir/time.txt" "$@" > /dev/null 2>&1
    read -r t m < "$dir/time.txt"
    if awk "BEGIN{exit !($t < $best_t)}"; then best_t=$t; best_m=$m; fi
  done
  echo "$best_t $best_m"
}

for rows in 1000000 5000000; do
  f="$dir/list-$rows.csv"
  read -r ft fm < <(best ${CARGO_TARGET_DIR:-target}/release/examples/csv_floor "$f" "$dir/floor.csv")
  # With a store (as a default run has one; a file of its own here) and without.
  for mode in store no-store; do
    if [ "$mode" = store ]; then
      rm -f "$dir/figures.sqlite3" "$dir/figures.sqlite3-wal" "$dir/figures.sqlite3-shm"
      read -r pt pm < <(best "$bin" verify "$f" --level syntax -o "$dir/out" -q --store "$dir/figures.sqlite3")
    else
      read -r pt pm < <(best "$bin" verify "$f" --level syntax -o "$dir/out" -q --no-store)
    fi
    awk -v r="$rows" -v m="$mode" -v pt="$pt" -v pm="$pm" -v ft="$ft" -v fm="$fm" -v b="$(stat -c %s "$f")" 'BEGIN{
      printf "%d rows (%.1f bytes/row), %s: prebounce %.2f s = %.0f rows/s, peak RSS %.1f MB | csv floor %.2f s (RSS %.1f MB) | ratio %.2fx\n",
        r, b/r, m, pt, r/pt, pm/1024, ft, fm/1024, pt/ft }'
  done
done

# Instructions executed (valgrind's cachegrind, user space, all threads): the same on every run,
# so a change too small for this machine's wall-clock noise still shows. INSTRUCTIONS=1 to run.
if [ "${INSTRUCTIONS:-0}" = 1 ] && command -v valgrind > /dev/null; then
  rows=200000
  f="$dir/list-$rows.csv"
  [ -s "$f" ] || ${CARGO_TARGET_DIR:-target}/release/examples/gen_list --rows "$rows" --seed 42 --compact > "$f"
  instructions() { valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
    awk '/I *refs:/ { gsub(",", "", $NF); print $NF }'; }
  rm -rf "$dir/out" "$dir/figures.sqlite3" "$dir/figures.sqlite3-wal" "$dir/figures.sqlite3-shm"
  pi=$(instructions "$bin" verify "$f" --level syntax -o "$dir/out" -q --store "$dir/figures.sqlite3")
  fi=$(instructions ${CARGO_TARGET_DIR:-target}/release/examples/csv_floor "$f" "$dir/floor.csv")
  awk -v r="$rows" -v p="$pi" -v f="$fi" 'BEGIN{
    printf "%d rows, store: prebounce %.0f instructions = %.0f a row | csv floor %.0f a row | ratio %.2fx\n",
      r, p, p/r, f/r, p/f }'
fi

if python3 -c "import email_validator" 2>/dev/null || pip install --quiet email-validator >/dev/null 2>&1; then
  python3 benches/compare_email_validator.py "$dir/list-1000000.csv"
else
  echo "email-validator not installable here; comparison skipped"
fi
