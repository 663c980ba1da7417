#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test (unit, corpus,
# end-to-end, property, scripted-server, and the lab suites against real unbound, Postfix and
# postgrey on 127.77.0.0/16, which lab/up installs and starts; it needs root the first time,
# to apt-get install them). Plain `cargo test` runs everything that needs no lab.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets --features lab -- -D warnings"
cargo clippy --locked --all-targets --features lab -- -D warnings
echo "== lab/up"
started_lab=no
lab_dir=${PREBOUNCE_LAB_DIR:-target/lab}
if ! [ -s "$lab_dir/unbound.pid" ] || ! kill -0 "$(cat "$lab_dir/unbound.pid")" 2>/dev/null; then
  started_lab=yes
fi
if ! lab/up; then
  echo "scripts/test.sh: the lab did not start, so the lab suites cannot run. Run this script" >&2
  echo "as root once (lab/up apt-get installs unbound, postfix and postgrey), or run" >&2
  echo "'sudo lab/up' and then this script again. 'cargo test' alone runs the rest." >&2
  exit 1
fi
if [ "$started_lab" = yes ]; then
  trap 'lab/down' EXIT
fi
echo "== cargo test --features lab"
scripts/ensure-chromium.sh
cargo test --locked --features lab
