#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test (unit, corpus,
# end-to-end, property). Needs only cargo; run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked
