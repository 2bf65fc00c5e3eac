#!/usr/bin/env bash
# The fleet-sweep benchmark of issue #17 (not part of the tests): N instances
# (1 to 3 ENIs each, two subnets, tagged, excluded, untagged, a few not Nitro)
# running before the function is deployed; the release binary's sweep is
# invoked again and again, each run with a short Lambda deadline, against the
# AWS emulator with a token bucket on mutating EC2 calls, until EC2 shows
# every mirrorable wanted ENI mirrored once; prints the figures and writes
# them to the "Fleet sweep" section of BENCHMARKS.md (between its markers;
# the rest of the file is left alone). Exits 1 if the runs did not converge.
#
#   bash scripts/fleet.sh [--build] [--binary PATH] [--instances 2000] [--eni-target-enis 12]
#                         [--burst 20] [--refill 10] [--pace 10] [--timeout-seconds 60]
#                         [--max-runs 50] [--page-size 1000] [--output PATH]
#
# --build compiles the release binary first (about 20 minutes from scratch on
# two cores); without it the existing one is used, by default
# $CARGO_TARGET_DIR/release/traffic-mirroring.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
setup_emulator
run_release_benchmark fleet "fleet sweep" "$@"
