#!/usr/bin/env bash
# Prints, for tansu, ClickHouse and skein: running or not, pid, whether the
# port answers, and the ClickHouse version. Always exits 0.
set -uo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

report() {
  local svc="$1" host="$2" port="$3" extra="${4:-}" pid state reach
  if pid="$(service_pid "$svc")"; then
    state="running"
  else
    state="not running"
    pid="-"
  fi
  if port_open "$host" "$port"; then reach="reachable"; else reach="not reachable"; fi
  printf '%-11s %-12s %-8s %-16s %-14s%s\n' "$svc" "$state" "$pid" "$host:$port" "$reach" "$extra"
}

ch_extra=""
if version="$(ch_version)"; then
  ch_extra="version $version"
fi

printf '%-11s %-12s %-8s %-16s %-14s%s\n' SERVICE STATE PID PORT REACHABLE INFO
report tansu "$BROKER_HOST" "$BROKER_PORT"
report clickhouse "$CH_HOST" "$CH_HTTP_PORT" "$ch_extra"
report skein 127.0.0.1 16686
echo "data folder: $DATA"
exit 0
