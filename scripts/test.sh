#!/usr/bin/env bash
# Runs every check and test: the emulator's own tests, formatting, clippy,
# and the Rust unit and integration tests against the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
setup_emulator

echo "== emulator tests (pytest)"
"$EMULATOR_PYTHON" -m pytest -q tests/emulator

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

echo "== cargo test"
cargo test --all-targets
