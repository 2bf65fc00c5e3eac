#!/usr/bin/env bash
# Builds and deploys the stack with the SAM CLI, taking every template
# parameter from a JSON file (infra/parameters.example.json shows them), so a
# scripted deploy needs no hand-quoted JSON on the command line. Needs only
# the pinned Rust toolchain, cargo-lambda and the SAM CLI (installed into their
# own virtualenv by setup_deploy_tools; not the test emulator), and AWS
# credentials for the account (the standard chain: AWS_PROFILE, ...).
#
#   bash scripts/deploy.sh <stack-name> <region> [parameters.json]
#
# The function is built for arm64 (Graviton; infra/template.yaml
# Architectures), cross-compiled with Zig, so any build machine will do.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
if [ $# -lt 2 ]; then
    echo "usage: bash scripts/deploy.sh <stack-name> <region> [parameters.json]" >&2
    exit 2
fi
stack="$1"
region="$2"
parameters="${3:-}"
setup_deploy_tools
export CARGO_ZIGBUILD_PYTHON_PATH="$DEPLOY_PYTHON"
if command -v rustup >/dev/null; then
    rustup target add aarch64-unknown-linux-gnu >/dev/null
fi

overrides=()
if [ -n "$parameters" ]; then
    mapfile -t overrides < <(python3 scripts/parameters.py "$parameters")
fi

# SAM's Rust builder is a beta feature and copies the binary from
# ./target/lambda/<binary>/bootstrap, so it builds in the clone's own target dir.
unset CARGO_TARGET_DIR
sam build --beta-features --template-file infra/template.yaml --build-dir "$CACHE_DIR/sam-build"
sam deploy \
    --template-file "$CACHE_DIR/sam-build/template.yaml" \
    --stack-name "$stack" \
    --region "$region" \
    --capabilities CAPABILITY_IAM \
    --resolve-s3 \
    --no-fail-on-empty-changeset \
    ${overrides[@]+--parameter-overrides "${overrides[@]}"}
