# Shared by tests/cluster scripts. Sourced, not run.

cluster_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$cluster_dir/../.." && pwd)
bin_dir=${EVENTSPAN_CLUSTER_BIN:-$repo_dir/target/cluster/bin}
state_dir=${EVENTSPAN_CLUSTER_STATE:-$repo_dir/target/cluster/run}

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

# Parses --state-dir DIR (the one option every script takes); other arguments are left in ARGS.
ARGS=()
parse_state_dir() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --state-dir) state_dir=$2; shift 2 ;;
      --state-dir=*) state_dir=${1#*=}; shift ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
  mkdir -p "$(dirname "$state_dir")"
  state_dir=$(cd "$(dirname "$state_dir")" && pwd)/$(basename "$state_dir")
}

# N distinct TCP ports on 127.0.0.1 that nothing listens on right now, taken below the kernel's
# ephemeral range: a port from that range can be taken, between this check and the listener's
# bind, by the local end of an outgoing connection (a component talking to the API server).
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
candidates = list(range(10000, low))
random.shuffle(candidates)
ports = []
for port in candidates:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        ports.append(port)
    except OSError:
        pass
    finally:
        s.close()
    if len(ports) == int(sys.argv[1]):
        break
print(" ".join(map(str, ports)))
PY
}

# Fails with a clear message if something already listens on the port.
ensure_free() {
  local port=$1 what=$2
  if python3 -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1', $port)) else 1)"; then
    return 0
  fi
  die "port $port for $what is taken by another process"
}

# nodes_ready N: whether node-1..node-N all exist and are Ready (one list, no waiting).
nodes_ready() {
  local want=$1 ready
  ready=$("$bin_dir/kubectl" get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}') || return 1
  for i in $(seq 1 "$want"); do
    grep -qx "node-$i=True" <<<"$ready" || return 1
  done
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# start NAME COMMAND...: runs a component in the background, its log in logs/NAME.log.
start() {
  local name=$1; shift
  mkdir -p "$state_dir/logs" "$state_dir/pids"
  setsid "$@" >"$state_dir/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$state_dir/pids/$name.pid"
}

# Prints why a component failed: it died or did not become healthy; shows its log tail.
component_failed() {
  local name=$1 why=$2
  log "$name $why; last lines of $state_dir/logs/$name.log:"
  tail -n 30 "$state_dir/logs/$name.log" >&2 || true
}

# wait_for NAME SECONDS CHECK...: polls CHECK until it succeeds, the component dies, or time runs out.
wait_for() {
  local name=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -f "$state_dir/pids/$name.pid" ] && ! pid_alive "$state_dir/pids/$name.pid"; then
      component_failed "$name" "exited"
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      component_failed "$name" "was not healthy after ${timeout}s"
      return 1
    fi
    sleep 0.2
  done
}

# stop NAME [SECONDS]: TERM, then KILL after SECONDS (10), by the pid this project recorded.
stop() {
  local pidfile=$state_dir/pids/$1.pid grace=${2:-10}
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((grace * 5))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$1 did not stop within ${grace}s of TERM; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}
