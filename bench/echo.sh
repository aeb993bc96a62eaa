#!/usr/bin/env bash
# Echo throughput and latency through the federation (release build). Figures go to
# docs/benchmarks.md. Usage: bench/echo.sh [--seconds N] [--levels 1,8,32,128] [--workers N]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p rma-testkit --bench echo -- "$@"
