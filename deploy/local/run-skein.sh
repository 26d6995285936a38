#!/usr/bin/env bash
# Starts `skein all-in-one --config topology.yaml` in the background (after
# `make up` and `make build`), waits until the query UI answers, and prints
# the endpoints. Skips the start when skein is already running.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

UI_URL="http://127.0.0.1:16686/"
HEALTH_TIMEOUT="${SKEIN_HEALTH_TIMEOUT:-60}"

[[ -x "$SKEIN_BIN" ]] || die "$SKEIN_BIN not found; build it with: make build"
mkdir -p "$SKEIN_DIR"

if pid="$(service_pid skein)"; then
  say "skein already running (pid $pid); restart with: make down && make run"
else
  rm -f "$SKEIN_PID"
  if port_open 127.0.0.1 16686; then
    owner="$(port_owner 16686)"
    die "cannot start skein: port 16686 on 127.0.0.1 is already in use by another process${owner:+ ($owner)}"
  fi
  say "starting skein all-in-one (log: $SKEIN_LOG)"
  (cd "$REPO" && exec setsid nohup "$SKEIN_BIN" all-in-one --config topology.yaml >>"$SKEIN_LOG" 2>&1 </dev/null) &
  echo $! >"$SKEIN_PID"
fi

ui_ready() {
  alive "$(cat "$SKEIN_PID" 2>/dev/null)" || return 2
  curl -fsS --max-time 2 -o /dev/null "$UI_URL" 2>/dev/null
}
deadline=$((SECONDS + HEALTH_TIMEOUT))
while true; do
  rc=0
  ui_ready || rc=$?
  ((rc == 0)) && break
  if ((rc == 2)) || ((SECONDS >= deadline)); then
    echo "[local] ---- last 40 lines of $SKEIN_LOG ----" >&2
    tail -n 40 "$SKEIN_LOG" >&2 || true
    if ((rc == 2)); then
      echo "[local] ERROR: skein exited during startup" >&2
    else
      echo "[local] ERROR: skein did not answer on $UI_URL within ${HEALTH_TIMEOUT}s" >&2
    fi
    exit 1
  fi
  sleep 1
done

cat <<EOT
[local] skein is running (pid $(cat "$SKEIN_PID"), log $SKEIN_LOG):
[local]   UI / query API   http://127.0.0.1:16686
[local]   OTLP gRPC        127.0.0.1:4317
[local]   OTLP HTTP        http://127.0.0.1:4318/v1/traces
[local]   Jaeger           thrift http://127.0.0.1:14268/api/traces, grpc 127.0.0.1:14250, agent udp 6831 (compact) 6832 (binary)
[local]   Zipkin           http://127.0.0.1:9411/api/v2/spans
[local]   sampling         http://127.0.0.1:5778/sampling?service=NAME
[local]   metrics          http://127.0.0.1:14269/metrics
[local]   Kafka broker     $BROKER_HOST:$BROKER_PORT
[local]   ClickHouse HTTP  http://$CH_HOST:$CH_HTTP_PORT
[local] stop with: make down
EOT
