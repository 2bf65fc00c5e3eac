#!/usr/bin/env bash
# The organization benchmark of issue #25 (not part of the tests): one hub
# deployment and N member accounts with M running instances each, all tagged
# to one Network Load Balancer of the hub; the release binary's sweep is
# invoked again and again, each run with a short Lambda deadline, against the
# AWS emulator with a token bucket per account on mutating EC2 calls, until
# every member's instances are mirrored exactly once (read from the outside
# with each member's own credentials); then the same N x M instances in one
# account, swept by a single-account deployment with the same settings, for
# comparison. Prints the figures and writes them to the "Organization sweep"
# section of BENCHMARKS.md (between its markers; the rest of the file is left
# alone). Exits 1 if a sweep did not converge within --max-runs.
#
#   bash scripts/org.sh [--build] [--binary PATH] [--accounts 20] [--instances-per-account 100]
#                       [--burst 20] [--refill 10] [--pace 10] [--timeout-seconds 60]
#                       [--max-runs 50] [--page-size 1000] [--no-single] [--output PATH]
#
# --build compiles the release binary first (about 20 minutes from scratch on
# two cores); without it the existing one is used, by default
# $CARGO_TARGET_DIR/release/traffic-mirroring.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
setup_emulator
run_release_benchmark org "organization sweep" "$@"
