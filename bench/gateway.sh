#!/usr/bin/env bash
# Side-by-side gateway benchmark: herd vs HAProxy vs nginx in front of the same two backend
# servers, same worker count, interleaved rounds (A B C A B C ...), bounded durations.
#
#   bench/gateway.sh [--workers N] [--rounds R] [--duration SECONDS] [--scenarios a,b,...]
#                    [--syscalls]
#
# Scenarios: ka64 ka256 (HTTP/1.1 keep-alive, small response, 64/256 connections),
# default64 default256 (the same, with herd running its default config: nothing tuned but
# the worker count), ka10k
# (the same with as many connections as idle holds, about 10,000; not in the default list),
# close
# (a new connection per request), 1m (1 MiB responses), https (TLS termination, keep-alive),
# h2 (HTTP/2 over TLS, h2load), tcp (L4 relay of keep-alive HTTP), idle (memory held per
# idle keep-alive client connection, 10,000 of them), idle-tls and idle-h2 (the same over
# HTTPS, and over HTTP/2 with TLS; not in the default list: run each on its own, as after
# another idle scenario the proxies would reuse the memory its connections left behind and
# read too low).
#
# --syscalls also counts each proxy's system calls per request, by name, with `perf stat`
# on the kernel's syscall tracepoints (cheap enough not to change what it counts).
#
# Prints a Markdown table of medians (min-max) and herd/HAProxy, herd/nginx ratios, and
# writes raw results to $WORK/results.jsonl.
source "$(dirname "$0")/lib.sh"

WORKERS=1; ROUNDS=3; DURATION=10; SCENARIOS="ka64,ka256,default256,close,1m,https,h2,tcp,idle"; SYSCALLS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --syscalls) SYSCALLS=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages wrk nginx haproxy h2load
[ "$SYSCALLS" = 1 ] && ensure_packages perf
build_herd
# As many descriptors as this shell may have; HAProxy wants two per connection it accepts.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
MAXCONN=$(( (NOFILE - 200) / 2 ))
IDLE_CONNS=${IDLE_CONNS:-$(( MAXCONN < 10000 ? MAXCONN - 100 : 10000 ))}
log "work dir $WORK; workers=$WORKERS rounds=$ROUNDS duration=${DURATION}s idle connections=$IDLE_CONNS"
prepare_proxy_work
head -c 1048576 /dev/zero | tr '\0' 'x' > "$WORK/www/1m"

require_free_ports 19101 19102 18100 18101 18102 18103 18110 18111 18112 18120 18121 18122 18198 18199
nginx -c "$WORK/backend-nginx.conf" -p "$WORK" & PIDS+=($!); BACKEND_PID=$!
wait_port 127.0.0.1:19101; wait_port 127.0.0.1:19102

"$HERD" gateway -c "$WORK/herd.toml" > "$WORK/herd.out" 2> "$WORK/herd.err" & PIDS+=($!); HERD_PID=$!
"$HERD" gateway -c "$WORK/herd-default.toml" > "$WORK/herd-default.out" 2> "$WORK/herd-default.err" & PIDS+=($!); HERD_DEFAULT_PID=$!
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 & PIDS+=($!); HAPROXY_PID=$!
nginx -c "$WORK/nginx-proxy.conf" -p "$WORK" & PIDS+=($!); NGINX_PID=$!
for p in 18100 18101 18102 18103 18110 18111 18112 18120 18121 18122; do wait_port 127.0.0.1:$p; done

# Ports: plain HTTP, HTTPS (h1 and h2), L4 TCP; "direct" is the backend itself.
declare -A PORT=([herd]=18100 [haproxy]=18101 [nginx]=18102 [direct]=19101)
declare -A TLS_PORT=([herd]=18110 [haproxy]=18111 [nginx]=18112)
declare -A TCP_PORT=([herd]=18120 [haproxy]=18121 [nginx]=18122 [direct]=19101)
proc_pids() { # system [scenario]
  case "$1" in
    herd) case "${2:-}" in default*) echo "$HERD_DEFAULT_PID" ;; *) echo "$HERD_PID" ;; esac ;;
    haproxy) echo "$HAPROXY_PID" ;;
    nginx) pids_of_group "$NGINX_PID" ;;
    direct) pids_of_group "$BACKEND_PID" ;;
  esac
}

RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
HZ=$(getconf CLK_TCK)

# The system calls a proxy makes on the path of a request; the total counts every one.
SYSCALL_NAMES="read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_ctl accept4 connect close shutdown setsockopt getsockopt getsockname getpeername ioctl fcntl futex"
SYSCALL_EVENTS="raw_syscalls:sys_enter$(for n in $SYSCALL_NAMES; do printf ',syscalls:sys_enter_%s' "$n"; done)"

# record SYSTEM SCENARIO ROUND JSON_FROM_LOADGEN CPU_TICKS RSS_KIB SYS_TICKS [PERF_STAT_CSV]
record() {
  python3 - "$@" "$HZ" >> "$RESULTS" <<'PY'
import json, sys
sysname, sc, rnd, line, ticks, rss, sys_ticks = sys.argv[1:8]
perf_csv, hz = (sys.argv[8], sys.argv[9]) if len(sys.argv) > 9 else ("", sys.argv[8])
r = json.loads(line)
if perf_csv:
    counts = {}
    for row in open(perf_csv):
        f = row.strip().split(",")
        if len(f) > 2 and f[0].replace(".", "").isdigit():
            name = f[2].split(":")[-1].replace("sys_enter_", "").replace("sys_enter", "total")
            counts[name] = counts.get(name, 0) + int(float(f[0]))
    r["syscalls_per_req"] = {k: v / max(r["requests"], 1) for k, v in counts.items()}
secs = r["duration_us"] / 1e6
r.update(system=sysname, scenario=sc, round=int(rnd), rps=r["requests"] / secs,
         cpu_s=int(ticks) / int(hz), sys_s=int(sys_ticks) / int(hz), rss_kib=int(rss))
r["cpu_s_per_100k"] = r["cpu_s"] / max(r["requests"], 1) * 100000
r["sys_s_per_100k"] = r["sys_s"] / max(r["requests"], 1) * 100000
print(json.dumps(r))
PY
  log "$2 round $3 $1: $(tail -n 1 "$RESULTS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f req/s p99 %sus errors %s+%s cpu %.2fs/100k" % (r["rps"], r["p99_us"], r["errors"], r["status_errors"], r["cpu_s_per_100k"]))')"
}

run_load() { # system scenario round
  local sys=$1 sc=$2 round=$3 url="http://127.0.0.1:${PORT[$1]}/" conns=64 extra=()
  case "$sc" in
    ka64) ;;
    ka256) conns=256 ;;
    # herd with its default config (port 18103) beside the same HAProxy and nginx.
    default64|default256)
      conns=${sc#default}
      [ "$sys" = herd ] && url="http://127.0.0.1:18103/" ;;
    ka10k) conns=$IDLE_CONNS ;;
    close) extra=(-H "Connection: close") ;;
    1m) conns=16; url="http://127.0.0.1:${PORT[$sys]}/1m" ;;
    https) url="https://127.0.0.1:${TLS_PORT[$sys]}/" ;;
    tcp) url="http://127.0.0.1:${TCP_PORT[$sys]}/" ;;
  esac
  local pids; pids=$(proc_pids "$sys" "$sc")
  local t0; t0=$(cpu_ticks $pids); local k0; k0=$(sys_ticks $pids)
  local line perf_pid="" perf_csv=""
  if [ "$SYSCALLS" = 1 ]; then
    perf_csv="$WORK/perf-$sys-$sc-$round.csv"
    perf stat -x, -o "$perf_csv" -e "$SYSCALL_EVENTS" -p "$(echo $pids | tr ' ' ,)" &
    perf_pid=$!
    sleep 0.5  # attached before the first request
  fi
  if [ "$sc" = h2 ]; then
    # 16 connections x 16 concurrent streams; h2load has no percentiles, so p50 is the mean.
    local out
    out=$(h2load -c16 -m16 -t1 -D"$DURATION" "https://127.0.0.1:${TLS_PORT[$sys]}/" 2>&1)
    line=$(python3 "$BENCH_DIR/h2load_json.py" <<< "$out")
  else
    line=$(wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 5s "${extra[@]}" -s "$BENCH_DIR/report.lua" "$url" | tail -n 1)
  fi
  local t1; t1=$(cpu_ticks $pids); local k1; k1=$(sys_ticks $pids)
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  record "$sys" "$sc" "$round" "$line" "$((t1 - t0))" "$(rss_kib $pids)" "$((k1 - k0))" $perf_csv
}

# Memory held per idle keep-alive client connection: open N connections, send one request on
# each so the proxy has a live HTTP session, then measure RSS growth while they sit idle.
idle_memory() { # system round scenario (idle; idle-tls for HTTPS; idle-h2 for HTTP/2 over TLS)
  local sys=$1 round=$2 sc=$3 n=$IDLE_CONNS port=${PORT[$1]} proto=plain
  [ "$sc" = idle-tls ] && { port=${TLS_PORT[$sys]}; proto=tls; }
  [ "$sc" = idle-h2 ] && { port=${TLS_PORT[$sys]}; proto=h2; }
  local pids; pids=$(proc_pids "$sys")
  local before; before=$(rss_kib $pids)
  python3 "$BENCH_DIR/idle_conns.py" 127.0.0.1 "$port" "$n" "$WORK/idle-$sys.ready" "$proto" &
  local holder=$!
  for _ in $(seq 1 1800); do [ -f "$WORK/idle-$sys.ready" ] && break; sleep 0.1; done
  sleep 1
  local after; after=$(rss_kib $pids)
  kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true
  rm -f "$WORK/idle-$sys.ready"
  local opened; opened=$(cat "$WORK/idle-$sys.count" 2>/dev/null || echo "$n")
  python3 -c "import json; print(json.dumps(dict(system='$sys', scenario='$sc', round=$round, conns=$opened, rss_before_kib=$before, rss_after_kib=$after, kib_per_conn=($after-$before)/max($opened,1))))" >> "$RESULTS"
  log "$sc round $round $sys: $(( after - before )) KiB for $opened connections"
  sleep 2
}

IFS=, read -ra SCS <<< "$SCENARIOS"
for sc in "${SCS[@]}"; do
  for round in $(seq 1 "$ROUNDS"); do
    for sys in herd haproxy nginx; do
      case "$sc" in
        idle|idle-tls|idle-h2) idle_memory "$sys" "$round" "$sc" ;;
        *) run_load "$sys" "$sc" "$round" ;;
      esac
    done
    # The backend alone, once, as the ceiling the proxies are measured against.
    case "$sc" in ka64|ka256|close|1m) [ "$round" = 1 ] && run_load direct "$sc" "$round" ;; esac
  done
done

python3 "$BENCH_DIR/summarize.py" "$RESULTS" "workers=$WORKERS, rounds=$ROUNDS, ${DURATION}s each"
