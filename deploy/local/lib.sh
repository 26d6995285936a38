# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared helpers for the deploy/local scripts. Sourced, never executed.
#
# Everything the local stack writes lives under $DATA ($REPO/data, git-ignored).
# Processes are tracked by pid files; a pid file only counts when the process
# is alive AND its command line (and, for tansu, its working directory) is the
# one these scripts started, so a recycled pid is never mistaken for ours.

# Physical path (pwd -P): it is compared with /proc/<pid>/cwd.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
DATA="$REPO/data"

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in
  *":$CARGO_BIN:"*) ;;
  *) PATH="$CARGO_BIN:$PATH" ;;
esac
# clickhouse-server lives in /usr/sbin, which is not on every user's PATH.
case ":$PATH:" in
  *":/usr/sbin:"*) ;;
  *) PATH="$PATH:/usr/sbin" ;;
esac
export PATH

TANSU_VERSION="0.6.0"
TANSU_DIR="$DATA/tansu"
TANSU_PID="$TANSU_DIR/tansu.pid"
TANSU_LOG="$TANSU_DIR/tansu.log"
BROKER_HOST="127.0.0.1"
BROKER_PORT="${SKEIN_BROKER_PORT:-9092}"

CH_DIR="$DATA/clickhouse"
CH_CONFIG="$CH_DIR/config.xml"
CH_PID="$CH_DIR/clickhouse.pid"
CH_STDOUT="$CH_DIR/clickhouse-server.stdout.log"
CH_LOG="$CH_DIR/clickhouse-server.log"
CH_ERRLOG="$CH_DIR/clickhouse-server.err.log"
CH_HOST="127.0.0.1"
CH_HTTP_PORT="${SKEIN_CH_HTTP_PORT:-8123}"
CH_TCP_PORT="${SKEIN_CH_TCP_PORT:-9000}"
CH_INTERSERVER_PORT="${SKEIN_CH_INTERSERVER_PORT:-9009}"

SKEIN_DIR="$DATA/skein"
SKEIN_PID="$SKEIN_DIR/skein.pid"
SKEIN_LOG="$SKEIN_DIR/skein.log"
SKEIN_BIN="$REPO/target/release/skein"

say() { printf '[local] %s\n' "$*"; }
warn() { printf '[local] WARNING: %s\n' "$*" >&2; }
die() {
  printf '[local] ERROR: %s\n' "$*" >&2
  exit 1
}

# The command line of a process, NUL separators turned into spaces.
proc_cmdline() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null; }

# alive PID: the process exists and is not a zombie (pid 1 here may not reap
# orphans, and kill -0 succeeds on a zombie).
alive() {
  local state
  [[ "$1" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)"
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# is_ours SERVICE PID: PID is alive and is the SERVICE process these scripts start.
is_ours() {
  local svc="$1" pid="$2" cmd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  cmd="$(proc_cmdline "$pid")" || return 1
  case "$svc" in
    tansu)
      [[ "$cmd" == *tansu*" broker "* ]] || return 1
      [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$TANSU_DIR" ]]
      ;;
    clickhouse) [[ "$cmd" == *clickhouse-server*"--config-file=$CH_CONFIG"* ]] ;;
    skein) [[ "$cmd" == *"$SKEIN_BIN "* ]] ;;
    *) return 1 ;;
  esac
}

pid_file_of() {
  case "$1" in
    tansu) echo "$TANSU_PID" ;;
    clickhouse) echo "$CH_PID" ;;
    skein) echo "$SKEIN_PID" ;;
  esac
}

# service_pid SERVICE: prints the pid of our running SERVICE and returns 0, or
# returns 1. Falls back to scanning /proc when the pid file is missing or stale
# (and repairs the pid file), so a lost pid file never leads to a second copy.
service_pid() {
  local svc="$1" file pid p
  file="$(pid_file_of "$svc")"
  if [[ -f "$file" ]]; then
    pid="$(tr -dc '0-9' <"$file")"
    if is_ours "$svc" "$pid"; then
      echo "$pid"
      return 0
    fi
  fi
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    if is_ours "$svc" "$pid"; then
      mkdir -p "$(dirname "$file")"
      echo "$pid" >"$file"
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# port_open HOST PORT: something accepts TCP connections there.
port_open() {
  # shellcheck disable=SC2016  # $0/$1 expand in the child bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# Best-effort description of who listens on a port (needs ss from iproute2).
port_owner() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n 1
  fi
}

# wait_until SECONDS COMMAND...: retries COMMAND every second until it succeeds.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

ch_ping() {
  [[ "$(curl -fsS --max-time 2 "http://$CH_HOST:$CH_HTTP_PORT/ping" 2>/dev/null)" == "Ok." ]]
}

ch_version() {
  curl -fsS --max-time 3 "http://$CH_HOST:$CH_HTTP_PORT/" --data-binary 'SELECT version()' 2>/dev/null
}

gone() { ! alive "$1"; }

# stop_service SERVICE: SIGTERM, wait up to 15 s, then SIGKILL; removes the pid file.
stop_service() {
  local svc="$1" file pid
  file="$(pid_file_of "$svc")"
  if ! pid="$(service_pid "$svc")"; then
    say "$svc is not running"
    rm -f "$file"
    return 0
  fi
  say "stopping $svc (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_until 15 gone "$pid"; then
    warn "$svc (pid $pid) did not exit within 15 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 5 gone "$pid" || warn "$svc (pid $pid) is still alive"
  fi
  rm -f "$file"
  say "$svc stopped"
}
