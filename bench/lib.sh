# Shared helpers for the side-by-side benchmarks. Source it; every process a script
# starts is recorded and stopped by PID on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WORK=${BENCH_WORK:-$(mktemp -d /tmp/herd-bench.XXXXXX)}
mkdir -p "$WORK"
PIDS=()

log() { printf '[bench] %s\n' "$*" >&2; }

cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

ensure_packages() {
  local missing=()
  for bin in "$@"; do
    case "$bin" in
      wrk) command -v wrk >/dev/null || missing+=(wrk) ;;
      nginx) command -v nginx >/dev/null || missing+=(nginx-light)
             [ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream) ;;
      haproxy) command -v haproxy >/dev/null || missing+=(haproxy) ;;
      etcd) command -v etcd >/dev/null || missing+=(etcd-server)
            command -v etcdctl >/dev/null || missing+=(etcd-client) ;;
      h2load) command -v h2load >/dev/null || missing+=(nghttp2-client) ;;
      perf) command -v perf >/dev/null || missing+=(linux-perf) ;;
    esac
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Debian starts the packaged services; the benchmark runs its own copies.
  # They use other ports, but they would compete for the same two cores.
  local svc
  for svc in nginx haproxy etcd; do
    systemctl stop "$svc" 2>/dev/null || service "$svc" stop >/dev/null 2>&1 || true
  done
}

# build_herd — the release binary, or HERD_BIN if set (a binary built elsewhere).
build_herd() {
  if [ -n "${HERD_BIN:-}" ]; then HERD=$HERD_BIN; log "using $HERD"; return; fi
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release -q -p herd)
  HERD="${CARGO_TARGET_DIR:-$ROOT/target}/release/herd"
}

# require_free_ports PORT... — refuse to run when anything already listens on a port the
# benchmark needs (on 127.0.0.1): its numbers would be another process's, or a mix.
require_free_ports() {
  local p busy=()
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then busy+=("$p"); fi
  done
  if [ ${#busy[@]} -gt 0 ]; then
    log "refusing to run: port(s) ${busy[*]} on 127.0.0.1 already in use; stop what listens there (ss -ltnp) and retry"
    exit 1
  fi
}

# wait_port HOST:PORT — until something accepts there (10 s).
wait_port() {
  local hp=$1 i
  for i in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "nothing listens on $hp"; return 1
}

# cpu_ticks PID... — user+system clock ticks of these processes and their threads.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    if [ -r "/proc/$pid/stat" ]; then
      local f; f=$(sed 's/^.*) //' "/proc/$pid/stat")
      # after the comm field: utime is field 12, stime 13 (1-based) in this remainder
      local ut st; ut=$(echo "$f" | awk '{print $12}'); st=$(echo "$f" | awk '{print $13}')
      total=$((total + ut + st))
    fi
  done
  echo "$total"
}

# sys_ticks PID... — the system (kernel) share of cpu_ticks.
sys_ticks() {
  local total=0 pid
  for pid in "$@"; do
    if [ -r "/proc/$pid/stat" ]; then
      total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $13}')))
    fi
  done
  echo "$total"
}

# rss_kib PID... — resident set of these processes, summed.
rss_kib() {
  local total=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# pids_of_group PID — the process and its children (nginx master + workers).
pids_of_group() {
  local pid=$1
  echo "$pid" $(pgrep -P "$pid" || true)
}

# prepare_proxy_work — what the gateway benchmarks share in $WORK: a self-signed P-256
# certificate (ECDSA: what a modern site serves) and the four configs from conf/ with
# WORK, WORKERS and MAXCONN filled in.
prepare_proxy_work() {
  mkdir -p "$WORK/www" "$WORK/tls"
  chmod 755 "$WORK" "$WORK/www"  # the backend nginx workers run as an unprivileged user
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench.local" -addext "subjectAltName=DNS:bench.local" \
    -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null
  cat "$WORK/tls/cert.pem" "$WORK/tls/key.pem" > "$WORK/tls/combined.pem"
  local f
  for f in backend-nginx.conf nginx-proxy.conf haproxy.cfg herd.toml herd-default.toml; do
    sed -e "s#__WORK__#$WORK#g" -e "s#__WORKERS__#$WORKERS#g" -e "s#__MAXCONN__#$MAXCONN#g" \
      "$BENCH_DIR/conf/$f" > "$WORK/$f"
  done
}
