#!/usr/bin/env bash
# Side-by-side registry benchmark: herd server vs etcd, single node, equal durability (both
# fsync before acknowledging), same thread budget (GOMAXPROCS = herd's worker threads = 2),
# the same wrk load through each one's HTTP/JSON API, interleaved rounds.
#
#   bench/registry.sh [--rounds R] [--duration SECONDS] [--conns "1 64"]
source "$(dirname "$0")/lib.sh"

ROUNDS=3; DURATION=10; CONNS="1 64"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages wrk etcd
build_herd
log "work dir $WORK"
RESULTS="$WORK/registry.jsonl"
: > "$RESULTS"

start_herd() {
  rm -rf "$WORK/herd-data"
  "$HERD" server --data-dir "$WORK/herd-data" --listen 127.0.0.1:17400 > "$WORK/herd-server.out" 2> "$WORK/herd-server.err" &
  PIDS+=($!); SERVER_PID=$!
  wait_port 127.0.0.1:17400
  for i in $(seq 1 100); do curl -sf http://127.0.0.1:17400/status | grep -q '"leader"' && break; sleep 0.05; done
}
start_etcd() {
  rm -rf "$WORK/etcd-data"
  GOMAXPROCS=2 etcd --name bench --data-dir "$WORK/etcd-data" \
    --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
    --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
    --initial-cluster bench=http://127.0.0.1:12380 --log-level error > "$WORK/etcd.log" 2>&1 &
  PIDS+=($!); SERVER_PID=$!
  wait_port 127.0.0.1:12379
  for i in $(seq 1 100); do curl -sf -XPOST http://127.0.0.1:12379/v3/kv/put -d '{"key":"d2FybQ==","value":"eA=="}' >/dev/null && break; sleep 0.05; done
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

HZ=$(getconf CLK_TCK)
run() { # system op conns round
  local sys=$1 op=$2 conns=$3 round=$4 port
  if [ "$sys" = herd ]; then start_herd; port=17400; else start_etcd; port=12379; fi
  if [ "$op" = get ]; then
    # Fill the keys the reads will ask for.
    KV_TARGET=$sys KV_OP=put wrk -t1 -c8 -d2s -s "$BENCH_DIR/kv.lua" "http://127.0.0.1:$port" > /dev/null
  fi
  local t0; t0=$(cpu_ticks "$SERVER_PID")
  local line
  line=$(KV_TARGET=$sys KV_OP=$op wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 10s -s "$BENCH_DIR/kv.lua" "http://127.0.0.1:$port" | tail -n 1)
  local t1; t1=$(cpu_ticks "$SERVER_PID")
  local rss; rss=$(rss_kib "$SERVER_PID")
  stop_server
  python3 - "$sys" "$op-c$conns" "$round" "$line" "$((t1 - t0))" "$HZ" "$rss" >> "$RESULTS" <<'PY'
import json, sys
sysname, sc, rnd, line, ticks, hz, rss = sys.argv[1:]
r = json.loads(line)
secs = r["duration_us"] / 1e6
r.update(system=sysname, scenario=sc, round=int(rnd), rps=r["requests"] / secs,
         cpu_s=int(ticks) / int(hz), rss_kib=int(rss))
r["cpu_s_per_100k"] = r["cpu_s"] / max(r["requests"], 1) * 100000
print(json.dumps(r))
PY
  log "$op c=$conns round $round $sys: $(tail -n 1 "$RESULTS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f ops/s p99 %sus errors %s+%s" % (r["rps"], r["p99_us"], r["errors"], r["status_errors"]))')"
}

for op in put get; do
  for conns in $CONNS; do
    for round in $(seq 1 "$ROUNDS"); do
      for sys in herd etcd; do run "$sys" "$op" "$conns" "$round"; done
    done
  done
done

python3 "$BENCH_DIR/summarize_registry.py" "$RESULTS" "rounds=$ROUNDS, ${DURATION}s each, single node, fsync on"
