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

command="bash scripts/storm.sh"
build=0
binary="$CARGO_TARGET_DIR/release/traffic-mirroring"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=1; command+=" --build" ;;
        --binary) binary="$2"; command+=" --binary $(printf '%q' "$2")"; shift ;;
        --binary=*) binary="${1#--binary=}"; command+=" $(printf '%q' "$1")" ;;
        *) args+=("$1"); command+=" $(printf '%q' "$1")" ;;
    esac
    shift
done

if [ "$build" = 1 ]; then
    echo "== the release binary for this machine"
    cargo build --release --bin traffic-mirroring
fi
if [ ! -x "$binary" ]; then
    echo "no binary at $binary: pass --build, or --binary PATH" >&2
    exit 2
fi

echo "== launch storm"
STORM_COMMAND="$command" "$EMULATOR_PYTHON" scripts/storm.py --binary "$binary" ${args[@]+"${args[@]}"}
