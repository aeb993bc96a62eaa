#!/usr/bin/env bash
# How far the facts can be trusted (issue 10): the generated corpus (180 tuning letters, 60
# held-out letters: 15 kinds × 12 conditions) read four ways through a real federation — raw
# Tesseract, enhance + OCR, enhance without binarising + OCR, and `process` as shipped — and
# scored per field and condition, with wrong-and-unflagged counts. Figures go to
# docs/benchmarks.md ("Extraction").
# Usage: bench/extract.sh [--count 180] [--held-out 60] [--misses FILE] [--dump DIR] [--only CONDITION]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
ensure_deps
export OMP_THREAD_LIMIT=1
exec cargo bench -p rma-testkit --bench extract -- "$@"
