#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test (unit, corpus,
# end-to-end, property, and the DNS lab tests against a real unbound on 127.77.0.1, which
# lab/up installs and starts; it needs root the first time, to apt-get install unbound).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "== lab/up"
started_lab=no
if ! [ -s target/lab/unbound.pid ] || ! kill -0 "$(cat target/lab/unbound.pid)" 2>/dev/null; then
  started_lab=yes
fi
lab/up
if [ "$started_lab" = yes ]; then
  trap 'lab/down' EXIT
fi
echo "== cargo test"
cargo test --locked
