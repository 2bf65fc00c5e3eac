#!/usr/bin/env bash
# The main job, locally: start the emulator, make a VPC with a source and a
# target ENI, create the ledger table (from infra/template.yaml) and the event
# bus, invoke the handler with the seed's create request, print the
# driverResponse and the completion event, then remove it again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
setup_emulator
cargo run --locked --quiet --example local_demo
