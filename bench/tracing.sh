#!/usr/bin/env bash
# What tracing costs the gateway (SPEC §5): the same herd gateway config three times —
# tracing off, on at 100 % sampling, on at 1 % — in front of the same two nginx backend
# servers, spans exported to a real `herd server`; HTTP/1.1 keep-alive, 64 connections,
# interleaved rounds. Reports requests/s and gateway CPU per request (and the server's CPU
# receiving the spans), and how many spans each gateway exported and dropped.
#
#   bench/tracing.sh [--workers N] [--rounds R] [--duration SECONDS]
source "$(dirname "$0")/lib.sh"

WORKERS=1; ROUNDS=3; DURATION=10
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages wrk nginx
build_herd
MAXCONN=4096
prepare_proxy_work
require_free_ports 19101 19102 18130 18131 18132 18190 18191 18192 18400
nginx -c "$WORK/backend-nginx.conf" -p "$WORK" & PIDS+=($!)
wait_port 127.0.0.1:19101; wait_port 127.0.0.1:19102

"$HERD" server --listen 127.0.0.1:18400 --data-dir "$WORK/server" > "$WORK/server.out" 2> "$WORK/server.err" & PIDS+=($!); SERVER_PID=$!
wait_port 127.0.0.1:18400

declare -A GW_PID PORT=([off]=18130 [full]=18131 [one]=18132) ADMIN=([off]=18190 [full]=18191 [one]=18192)
for v in off full one; do
  {
    case $v in
      full) printf '[tracing]\notlp_endpoint = "http://127.0.0.1:18400/v1/traces"\nsample_ratio = 1.0\n\n' ;;
      one) printf '[tracing]\notlp_endpoint = "http://127.0.0.1:18400/v1/traces"\nsample_ratio = 0.01\n\n' ;;
    esac
    printf '[gateway]\nworkers = %s\n\n[admin]\nlisten = "127.0.0.1:%s"\n\n' "$WORKERS" "${ADMIN[$v]}"
    printf '[[listeners]]\nname = "web"\nprotocol = "http"\nbind = "127.0.0.1:%s"\n\n' "${PORT[$v]}"
    printf '[[routes]]\nbackend = "app"\n\n[backends.app]\npolicy = "round_robin"\n'
    printf 'servers = [ { addr = "127.0.0.1:19101" }, { addr = "127.0.0.1:19102" } ]\nmax_idle_per_server = 256\n'
  } > "$WORK/herd-$v.toml"
  "$HERD" gateway -c "$WORK/herd-$v.toml" > "$WORK/herd-$v.out" 2> "$WORK/herd-$v.err" & PIDS+=($!); GW_PID[$v]=$!
  wait_port "127.0.0.1:${PORT[$v]}"
done

RESULTS="$WORK/results.jsonl"; : > "$RESULTS"
HZ=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
  for v in off full one; do
    g0=$(cpu_ticks "${GW_PID[$v]}"); s0=$(cpu_ticks "$SERVER_PID")
    line=$(wrk -t1 -c64 -d"${DURATION}s" --timeout 5s -s "$BENCH_DIR/report.lua" "http://127.0.0.1:${PORT[$v]}/" | tail -n 1)
    g1=$(cpu_ticks "${GW_PID[$v]}"); s1=$(cpu_ticks "$SERVER_PID")
    python3 - "$v" "$round" "$line" "$((g1 - g0))" "$((s1 - s0))" "$HZ" >> "$RESULTS" <<'PY'
import json, sys
v, rnd, line, g, s, hz = sys.argv[1:]
r = json.loads(line)
secs = r["duration_us"] / 1e6
n = max(r["requests"], 1)
print(json.dumps(dict(variant=v, round=int(rnd), rps=r["requests"] / secs, p99_us=r["p99_us"],
    errors=r["errors"] + r["status_errors"], gw_cpu_us_per_req=int(g) / int(hz) / n * 1e6,
    server_cpu_us_per_req=int(s) / int(hz) / n * 1e6)))
PY
    log "round $round $v: $(tail -n 1 "$RESULTS")"
  done
done
sleep 2  # the last batches reach the server
for v in full one; do
  curl -s "http://127.0.0.1:${ADMIN[$v]}/metrics" | grep '^herd_trace_spans_total' | sed "s/^/$v: /" >&2
done

python3 - "$RESULTS" "$WORKERS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(v, k):
    xs = [r[k] for r in rows if r["variant"] == v]
    return statistics.median(xs), min(xs), max(xs)
off_rps = med("off", "rps")[0]; off_cpu = med("off", "gw_cpu_us_per_req")[0]
print(f"| tracing (workers={sys.argv[2]}, wrk c=64 keep-alive) | req/s median (min-max) | vs off | gateway CPU µs/req | vs off | server CPU µs/req | p99 µs | errors |")
print("|---|---|---|---|---|---|---|---|")
names = {"off": "off", "full": "on, 100 %", "one": "on, 1 %"}
for v in ["off", "full", "one"]:
    r, lo, hi = med(v, "rps"); c = med(v, "gw_cpu_us_per_req")[0]
    s = med(v, "server_cpu_us_per_req")[0]; p = med(v, "p99_us")[0]
    e = sum(x["errors"] for x in rows if x["variant"] == v)
    print(f"| {names[v]} | {r:,.0f} ({lo:,.0f}-{hi:,.0f}) | {r/off_rps:.2f}x | {c:.2f} | {c/off_cpu:.2f}x | {s:.2f} | {p:,.0f} | {e} |")
PY
