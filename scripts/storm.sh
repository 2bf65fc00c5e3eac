#!/usr/bin/env bash
# The launch-storm benchmark of issue #8 (not part of the tests): N instances'
# EC2 `running` events through the request queue to several processes of the
# release binary, against the AWS emulator with a token bucket on mutating EC2
# calls; prints the figures and writes them to the "Launch storm" section of
# BENCHMARKS.md (between its markers; the rest of the file is left alone).
#
#   bash scripts/storm.sh [--build] [--binary PATH] [--instances 200] [--processes 4]
#                         [--burst 20] [--refill 10] [--retry-delay 2] [--timeout 1800]
#
# --build compiles the release binary first (about 20 minutes from scratch on
# two cores); without it the existing one is used, by default
# $CARGO_TARGET_DIR/release/traffic-mirroring.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
setup_emulator
run_release_benchmark storm "launch storm" "$@"
