#!/usr/bin/env bash
# OCR pages per second through the federation with 1 and 2 workers, against the tesseract
# command line on the same pages (release build). Figures go to docs/benchmarks.md.
# Usage: bench/ocr.sh [--pages N]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
ensure_deps
exec cargo bench -p rma-testkit --bench ocr -- "$@"
