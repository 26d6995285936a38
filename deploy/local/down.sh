#!/usr/bin/env bash
# Stops what `make run` / up.sh started: skein (if data/skein/skein.pid
# exists), then the tansu broker and ClickHouse. SIGTERM, up to 15 s to exit,
# then SIGKILL; pid files are removed. Data under data/ is kept. Idempotent.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# skein first: it is a client of the other two and flushes on shutdown.
stop_service skein
stop_service tansu
stop_service clickhouse
say "stack is down (data kept in $DATA; remove it with: make clean-data)"
