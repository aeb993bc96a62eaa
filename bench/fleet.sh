#!/usr/bin/env bash
# How far one coordinator and one router scale: N real workers linked to one coordinator, M
# simulated coordinators registered at one router, each server in its own process. Figures go to
# docs/benchmarks.md.
# Usage: bench/fleet.sh [--workers 1000,10000] [--coordinators 100,1000] [--idle-seconds 20]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p rma-testkit --bench fleet -- "$@"
