#!/usr/bin/env bash
# Load-aware choice (p2c, weighted) against round-robin on a heterogeneous fleet: one worker 5×
# slower, one coordinator behind added latency, a mixed echo + OCR load. Figures go to
# docs/benchmarks.md. Usage: bench/balance.sh [--seconds 20] [--clients 8] [--ocr-share 0.2]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_THREAD_LIMIT=1
exec cargo bench -p rma-testkit --bench balance -- "$@"
