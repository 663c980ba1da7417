#!/usr/bin/env bash
# Regenerates samples/ deterministically (same seed → same bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release --example gen_list -- --rows 2500 --seed 2026 > samples/leads.csv
cargo run --quiet --release --example gen_list -- --rows 40 --seed 7 --headerless > samples/headerless.csv
echo "samples/leads.csv: $(wc -l < samples/leads.csv) lines; samples/headerless.csv: $(wc -l < samples/headerless.csv) lines"
