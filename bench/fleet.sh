#!/usr/bin/env bash
# How far one coordinator and one router scale: N real workers linked to one coordinator, M
# simulated coordinators registered at one router, each server in its own process. Figures go to
# docs/benchmarks.md.
# Usage: bench/fleet.sh [--workers 1000,10000] [--coordinators 100,1000] [--idle-seconds 20]
set -euo pipefail
cd "$(dirname "$0")/.."
# Each worker holds a socket in this process and one in the coordinator's: 50,000 workers need a
# higher open-files limit than most machines start with. Raise it when allowed (root), else say so.
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 131072 ]; then
  ulimit -Hn 131072 2>/dev/null && ulimit -Sn 131072 ||
    echo "open-files hard limit is $(ulimit -Hn): runs past about $(( $(ulimit -Hn) - 1000 )) workers will fail to link" >&2
fi
exec cargo bench -p rma-testkit --bench fleet -- "$@"
