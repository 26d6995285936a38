#!/usr/bin/env bash
# Starts the local stack, the tansu Kafka broker and ClickHouse, as background
# processes with pid files, and waits until both answer. Installs what is
# missing first (install.sh). Idempotent: what already runs is left alone.
#
# State: $REPO/data/tansu (tansu.db, log, pid), $REPO/data/clickhouse (config,
# db/, logs, pid). Ports: broker 9092; ClickHouse HTTP 8123, native TCP 9000,
# interserver 9009. Overrides: SKEIN_CH_HTTP_PORT, SKEIN_CH_TCP_PORT,
# SKEIN_CH_INTERSERVER_PORT, SKEIN_BROKER_PORT; SKEIN_HEALTH_TIMEOUT (60 s).
set -euo pipefail
HERE="$(dirname "${BASH_SOURCE[0]}")"
bash "$HERE/install.sh"
# shellcheck source=deploy/local/lib.sh
source "$HERE/lib.sh"

HEALTH_TIMEOUT="${SKEIN_HEALTH_TIMEOUT:-60}"

# Refuses to start SERVICE when PORT is already taken by some other process.
ensure_port_free() {
  local svc="$1" port="$2" owner hint=""
  port_open 127.0.0.1 "$port" || return 0
  owner="$(port_owner "$port")"
  if [[ "$svc" == clickhouse ]] && debian_clickhouse_running >/dev/null; then
    hint=" It looks like Debian's own clickhouse-server instance (config /etc/clickhouse-server/config.xml) is running;"
    hint+=" stop it with: /etc/init.d/clickhouse-server stop (or: kill $(debian_clickhouse_running))."
  fi
  die "cannot start $svc: port $port on 127.0.0.1 is already in use by another process${owner:+ ($owner)}.$hint"
}

# Prints the pid of a clickhouse-server running with Debian's default config.
debian_clickhouse_running() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd="$(proc_cmdline "${p#/proc/}")" || continue
    if [[ "$cmd" == *clickhouse-server* && "$cmd" == *"/etc/clickhouse-server/config.xml"* ]]; then
      echo "${p#/proc/}"
      return 0
    fi
  done
  return 1
}

# spawn PIDFILE DIR LOG COMMAND...: starts COMMAND detached (own session, so
# immune to the caller's hangup and Ctrl-C) in DIR, output appended to LOG.
# setsid and nohup exec (no fork) here, so $! is the server's own pid.
spawn() {
  local pidfile="$1" dir="$2" log="$3"
  shift 3
  (cd "$dir" && exec setsid nohup "$@" >>"$log" 2>&1 </dev/null) &
  echo $! >"$pidfile"
}

write_clickhouse_config() {
  mkdir -p "$CH_DIR"/{db,tmp,user_files,format_schemas}
  # ClickHouse 18.16 (Debian 12's package): the root element is <yandex>.
  cat >"$CH_CONFIG" <<EOF
<?xml version="1.0"?>
<!-- Written by deploy/local/up.sh on every start; edit the script, not this file. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$CH_LOG</log>
        <errorlog>$CH_ERRLOG</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>

    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <interserver_http_port>$CH_INTERSERVER_PORT</interserver_http_port>
    <listen_host>127.0.0.1</listen_host>

    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <!-- Allocated on demand; kept small for a laptop / CI runner. -->
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
    <mark_cache_size>536870912</mark_cache_size>

    <path>$CH_DIR/db/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>

    <!-- Debian's users.xml: user "default", no password. -->
    <users_config>/etc/clickhouse-server/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <!-- Same DateTime rendering on every machine. -->
    <timezone>UTC</timezone>
    <!-- Tests drop their databases whatever their size. -->
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
EOF
}

# --- preflight: decide what to start, refuse to fight over ports -------------
mkdir -p "$TANSU_DIR" "$CH_DIR"
command -v tansu >/dev/null 2>&1 || die "tansu not found on PATH (install.sh should have installed it)"
command -v clickhouse-server >/dev/null 2>&1 || die "clickhouse-server not found (install.sh should have installed it)"

start_tansu=1
if pid="$(service_pid tansu)"; then
  say "tansu already running (pid $pid)"
  start_tansu=0
else
  rm -f "$TANSU_PID"
  ensure_port_free tansu "$BROKER_PORT"
fi

start_clickhouse=1
if pid="$(service_pid clickhouse)"; then
  say "clickhouse already running (pid $pid)"
  start_clickhouse=0
else
  rm -f "$CH_PID"
  ensure_port_free clickhouse "$CH_HTTP_PORT"
  ensure_port_free clickhouse "$CH_TCP_PORT"
  ensure_port_free clickhouse "$CH_INTERSERVER_PORT"
fi

# --- start --------------------------------------------------------------------
if ((start_tansu)); then
  say "starting tansu on $BROKER_HOST:$BROKER_PORT (log: $TANSU_LOG)"
  spawn "$TANSU_PID" "$TANSU_DIR" "$TANSU_LOG" "$(command -v tansu)" broker \
    --listener-url "tcp://$BROKER_HOST:$BROKER_PORT" \
    --advertised-listener-url "tcp://$BROKER_HOST:$BROKER_PORT" \
    --storage-engine "sqlite://tansu.db"
fi

if ((start_clickhouse)); then
  write_clickhouse_config
  say "starting clickhouse on $CH_HOST:$CH_HTTP_PORT (log: $CH_LOG)"
  spawn "$CH_PID" "$CH_DIR" "$CH_STDOUT" "$(command -v clickhouse-server)" "--config-file=$CH_CONFIG"
fi

# --- wait until healthy ---------------------------------------------------------
# The pid file is read directly (not service_pid): right after the fork the
# process may not have exec'd the server yet.
tansu_ready() {
  alive "$(cat "$TANSU_PID" 2>/dev/null)" || return 2
  port_open "$BROKER_HOST" "$BROKER_PORT"
}
clickhouse_ready() {
  alive "$(cat "$CH_PID" 2>/dev/null)" || return 2
  ch_ping
}
# wait_healthy CHECK: CHECK returns 0 when healthy, 2 when the process died.
# On failure, sets WHY.
WHY=""
wait_healthy() {
  local check="$1" deadline=$((SECONDS + HEALTH_TIMEOUT)) rc
  while true; do
    rc=0
    "$check" || rc=$?
    ((rc == 0)) && return 0
    if ((rc == 2)); then
      WHY="the process exited during startup"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      WHY="no answer within ${HEALTH_TIMEOUT}s (the process is still running; make down stops it)"
      return 1
    fi
    sleep 1
  done
}

failed=0
if wait_healthy tansu_ready; then
  say "tansu is healthy (pid $(service_pid tansu), accepting TCP on $BROKER_HOST:$BROKER_PORT)"
  # tansu 0.6's sqlite schema has no index on its header table, and its
  # fetch queries it once per record: consuming scanned every header the
  # broker ever stored, and slowed down as the broker filled (4.5x fewer
  # spans/s with 25k messages held). tansu creates its tables before it
  # listens; the index is only added once. pipeline/bench/src/process.rs
  # (TANSU_HEADER_INDEX) adds the same to the brokers of tests and benches.
  sqlite3 -cmd ".timeout 10000" "$TANSU_DIR/tansu.db" \
    "CREATE INDEX IF NOT EXISTS skein_header_record ON header (topition, offset_id)" ||
    die "could not add the header index to $TANSU_DIR/tansu.db"
else
  echo "[local] ---- last 30 lines of $TANSU_LOG ----" >&2
  tail -n 30 "$TANSU_LOG" >&2 || true
  echo "[local] ERROR: tansu did not become healthy: $WHY" >&2
  failed=1
fi

if wait_healthy clickhouse_ready; then
  say "clickhouse is healthy (pid $(service_pid clickhouse), version $(ch_version))"
else
  echo "[local] ---- last 30 lines of $CH_ERRLOG ----" >&2
  tail -n 30 "$CH_ERRLOG" >&2 || true
  echo "[local] ---- last 10 lines of $CH_STDOUT ----" >&2
  tail -n 10 "$CH_STDOUT" >&2 || true
  echo "[local] ERROR: clickhouse did not become healthy: $WHY" >&2
  failed=1
fi
((failed == 0)) || exit 1

cat <<EOF
[local] stack is up:
[local]   Kafka broker (tansu)  $BROKER_HOST:$BROKER_PORT
[local]   ClickHouse HTTP       http://$CH_HOST:$CH_HTTP_PORT  (native TCP $CH_HOST:$CH_TCP_PORT, user default, no password)
[local]   data folder           $DATA
[local]   stop with: make down   (status: make status)
EOF
