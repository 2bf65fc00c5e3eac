#!/usr/bin/env bash
# The benchmark (not part of the tests): builds the arm64 deployment zip (for
# its size) and the release binary for this machine, runs scripts/bench.py:
# the binary under the small Lambda Runtime API in scripts/harness.py against
# the AWS emulator; prints the figures and writes them to BENCHMARKS.md.
# Release builds take about 20 minutes each from scratch on two cores; later
# runs reuse them.
#
#   bash scripts/bench.sh [--samples N] [--starts N]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
setup_emulator

echo "== the arm64 deployment zip"
bash scripts/package.sh
zip="$CARGO_TARGET_DIR/lambda/traffic-mirroring/bootstrap.zip"

echo "== the release binary for this machine"
cargo build --locked --release --bin traffic-mirroring
binary="$CARGO_TARGET_DIR/release/traffic-mirroring"

echo "== benchmark"
"$EMULATOR_PYTHON" scripts/bench.py --binary "$binary" --zip "$zip" "$@"
