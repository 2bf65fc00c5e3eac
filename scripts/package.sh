#!/usr/bin/env bash
# Builds the deployment zip of the function for Lambda on arm64 (Graviton)
# with cargo-lambda, cross-compiling with Zig, and prints where it is and its
# size. Works on a fresh machine with rustup and Python 3: cargo-lambda and
# ziglang come from PyPI (pinned in scripts/requirements-deploy.txt) and the
# aarch64 standard library from rustup. A release build from scratch takes
# about 20 minutes on two cores.
#
#   bash scripts/package.sh
#   -> $CARGO_TARGET_DIR/lambda/traffic-mirroring/bootstrap.zip
#
# Deploy the zip with `cargo lambda deploy` or the AWS CLI (infra/README.md),
# or let `sam build` build it itself from infra/template.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh   # CARGO_TARGET_DIR, shared with the other scripts
setup_deploy_tools         # the deploy venv: cargo-lambda, ziglang and the SAM CLI, on PATH (no emulator)

# cargo-lambda (through cargo-zigbuild) runs Zig as `python3 -m ziglang`;
# name the venv's python so the pinned ziglang is the one used.
export CARGO_ZIGBUILD_PYTHON_PATH="$DEPLOY_PYTHON"

target=aarch64-unknown-linux-gnu
if command -v rustup >/dev/null; then
    rustup target add "$target" >/dev/null
fi

# The function's binary: the first [[bin]] of Cargo.toml.
binary=$(awk '/^\[\[bin\]\]/ { in_bin = 1; next } /^\[/ { in_bin = 0 } in_bin && /^name *=/ { gsub(/^name *= *"|".*$/, ""); print; exit }' Cargo.toml)
if [ -z "$binary" ]; then
    echo "no [[bin]] name found in Cargo.toml" >&2
    exit 1
fi

# The target dir comes from CARGO_TARGET_DIR (scripts/common.sh), not from
# --target-dir, which cargo-lambda 1.9 does not pass on to `cargo metadata`.
# --disable-optimizations: build with Cargo.toml's [profile.release] exactly
# (already tuned: opt-level "s", lto, codegen-units 1, strip). Without it
# cargo-lambda adds its own release settings, among them panic = "abort",
# while the function keeps panic = "unwind" so lambda_runtime can turn a
# panic into an invocation error.
echo "== cargo lambda build --locked --release --arm64 --output-format zip --bin $binary (into $CARGO_TARGET_DIR)"
cargo lambda build --locked --release --arm64 --output-format zip --bin "$binary" --disable-optimizations

zip="$CARGO_TARGET_DIR/lambda/$binary/bootstrap.zip"
if [ ! -f "$zip" ]; then
    echo "cargo lambda did not produce $zip" >&2
    exit 1
fi
bytes=$(stat -c %s "$zip")
echo "$zip"
awk -v b="$bytes" 'BEGIN { printf "%d bytes (%.2f MB; Lambda takes up to 50 MB zipped by direct upload)\n", b, b / 1000000 }'
