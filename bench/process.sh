#!/usr/bin/env bash
# `process` on one-page phone photos, uncached, with the whole federation (router, coordinator,
# one worker) pinned to one core: the wall time a user waits and each step's share.
# Figures go to docs/benchmarks.md ("process on one core").
# Usage: bench/process.sh [LETTER...]   (default: council-tax smudged-final-notice)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
ensure_deps
build_ui
cargo build --release --locked -p rma -p rma-fixtures --bins
letters=("$@")
[ ${#letters[@]} -gt 0 ] || letters=(council-tax smudged-final-notice)
dir="$(mktemp -d)"
trap 'kill -INT "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true; rm -rf "$dir"' EXIT
OMP_THREAD_LIMIT=1 taskset -c 0 ./target/release/rma up --listen 127.0.0.1:0 --workers 1 \
  --data-dir "$dir/data" > "$dir/up.log" 2>&1 &
up=$!
for _ in $(seq 1 120); do grep -q "rma is up" "$dir/up.log" && break; sleep 0.5; done
url="$(grep -o 'http://[0-9.:]*' "$dir/up.log" | head -1)"
[ -n "$url" ] || { echo "rma up did not start:"; cat "$dir/up.log"; exit 1; }
echo "process, one core (taskset -c 0), release build, uncached; $(nproc) cores on this machine"
printf '%-24s %8s  %s\n' letter "wall s" "steps (ms)"
for letter in "${letters[@]}"; do
  ./target/release/rma-fixture "$letter" "$dir/$letter.jpg" --photo
  wall=$(curl -s -X POST "$url/api/service/process" -H 'content-type: image/jpeg' \
    --data-binary @"$dir/$letter.jpg" -o "$dir/out.json" -w '%{time_total}')
  steps=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(', '.join(f\"{s['step']} {s['ms']}\" for s in r['steps']))" "$dir/out.json")
  printf '%-24s %8s  %s\n' "$letter" "$wall" "$steps"
done
