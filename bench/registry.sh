#!/usr/bin/env bash
# Side-by-side registry benchmark: herd server vs etcd, single node, equal durability (both
# fsync before acknowledging), same thread budget (GOMAXPROCS = herd's worker threads = 2),
# the same wrk load through each one's HTTP/JSON API, interleaved rounds.
#
#   bench/registry.sh [--rounds R] [--duration SECONDS] [--conns "1 64"] [--members 1|3] [--tls]
#
# --members 3 runs a 3-member herd cluster beside a 3-member etcd cluster on this one
# machine, the load sent to each one's leader; CPU and RSS are the three members' sum.
# --tls: both serve their clients over TLS and their members speak mutual TLS to each
# other, with certificates from `herd cert` (ECDSA P-256). wrk cannot present a client
# certificate, so client certificates are not asked for on either side (herd:
# --tls-client-auth optional; etcd: no --client-cert-auth nor --trusted-ca-file).
source "$(dirname "$0")/lib.sh"

ROUNDS=3; DURATION=10; CONNS="1 64"; MEMBERS=1; OPS="put get"; TLS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --members) MEMBERS=$2; shift 2 ;;
    --ops) OPS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --tls) TLS=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages wrk etcd
build_herd
require_free_ports 17400 17401 17402 17403 17404 12379 12380 12381 12382 12383 12384 12385 12386 12387 12388
log "work dir $WORK"
RESULTS="$WORK/registry.jsonl"
: > "$RESULTS"

SCHEME=http; CURL=(curl -sf); HERD_TLS=(); ETCD_TLS=()
if [ "$TLS" = 1 ]; then
  SCHEME=https; PKI="$WORK/pki"; CURL=(curl -sf --cacert "$PKI/ca.pem")
  "$HERD" cert init --dir "$PKI" > /dev/null
  for n in 1 2 3; do "$HERD" cert issue --dir "$PKI" --name "m$n" --ip 127.0.0.1 > /dev/null 2>&1; done
fi
herd_tls() { # member
  [ "$TLS" = 1 ] && echo "--tls-cert $PKI/m$1.pem --tls-key $PKI/m$1.key --tls-ca $PKI/ca.pem --tls-client-auth optional"
  true
}
etcd_tls() { # member
  # No --trusted-ca-file: with it etcd 3.4 requires client certificates, which wrk lacks.
  [ "$TLS" = 1 ] && echo "--cert-file $PKI/m$1.pem --key-file $PKI/m$1.key \
    --peer-cert-file $PKI/m$1.pem --peer-key-file $PKI/m$1.key --peer-trusted-ca-file $PKI/ca.pem --peer-client-cert-auth"
  true
}

# Each start_* sets SERVER_PIDS (every member) and PORT (the leader's client port).
start_herd() {
  rm -rf "$WORK"/herd-data*
  SERVER_PIDS=()
  local m port
  for m in $(seq 1 "$MEMBERS"); do
    port=$((17400 + m - 1))
    local join=(); [ "$m" -gt 1 ] && join=(--join 127.0.0.1:17400)
    # shellcheck disable=SC2046
    "$HERD" server --data-dir "$WORK/herd-data$m" --listen "127.0.0.1:$port" "${join[@]}" $(herd_tls "$m") \
      > "$WORK/herd-server$m.out" 2> "$WORK/herd-server$m.err" &
    PIDS+=($!); SERVER_PIDS+=($!)
    wait_port "127.0.0.1:$port"
    if [ "$m" = 1 ]; then
      for i in $(seq 1 100); do "${CURL[@]}" "$SCHEME://127.0.0.1:17400/status" | grep -q '"leader"' && break; sleep 0.05; done
    fi
  done
  # Every member a voter before the load starts.
  for i in $(seq 1 200); do
    [ "$("${CURL[@]}" "$SCHEME://127.0.0.1:17400/v1/cluster" | grep -o '"role":"\(leader\|follower\)"' | wc -l)" -ge "$MEMBERS" ] && break
    sleep 0.05
  done
  PORT=17400
}
start_etcd() {
  rm -rf "$WORK"/etcd-data*
  SERVER_PIDS=()
  local m cluster=""
  for m in $(seq 1 "$MEMBERS"); do cluster+="${cluster:+,}e$m=$SCHEME://127.0.0.1:$((12380 + 2 * (m - 1)))"; done
  for m in $(seq 1 "$MEMBERS"); do
    local cport=$((12379 + 2 * (m - 1))) pport=$((12380 + 2 * (m - 1)))
    # shellcheck disable=SC2046
    GOMAXPROCS=2 etcd --name "e$m" --data-dir "$WORK/etcd-data$m" $(etcd_tls "$m") \
      --listen-client-urls "$SCHEME://127.0.0.1:$cport" --advertise-client-urls "$SCHEME://127.0.0.1:$cport" \
      --listen-peer-urls "$SCHEME://127.0.0.1:$pport" --initial-advertise-peer-urls "$SCHEME://127.0.0.1:$pport" \
      --initial-cluster "$cluster" --initial-cluster-state new --log-level error > "$WORK/etcd$m.log" 2>&1 &
    PIDS+=($!); SERVER_PIDS+=($!)
  done
  for m in $(seq 1 "$MEMBERS"); do wait_port "127.0.0.1:$((12379 + 2 * (m - 1)))"; done
  for i in $(seq 1 100); do "${CURL[@]}" -XPOST "$SCHEME://127.0.0.1:12379/v3/kv/put" -d '{"key":"d2FybQ==","value":"eA=="}' >/dev/null && break; sleep 0.05; done
  PORT=12379
  for m in $(seq 1 "$MEMBERS"); do
    local cport=$((12379 + 2 * (m - 1)))
    if "${CURL[@]}" -XPOST "$SCHEME://127.0.0.1:$cport/v3/maintenance/status" -d '{}' \
        | python3 -c 'import json,sys; v=json.load(sys.stdin); sys.exit(0 if v["leader"] == v["header"]["member_id"] else 1)'; then
      PORT=$cport
    fi
  done
}
stop_server() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}

HZ=$(getconf CLK_TCK)
run() { # system op conns round
  local sys=$1 op=$2 conns=$3 round=$4 port
  if [ "$sys" = herd ]; then start_herd; else start_etcd; fi
  port=$PORT
  if [ "$op" = get ]; then
    # Fill the keys the reads will ask for.
    KV_TARGET=$sys KV_OP=put wrk -t1 -c8 -d2s -s "$BENCH_DIR/kv.lua" "$SCHEME://127.0.0.1:$port" > /dev/null
  fi
  local t0; t0=$(cpu_ticks "${SERVER_PIDS[@]}")
  local line
  line=$(KV_TARGET=$sys KV_OP=$op wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 10s -s "$BENCH_DIR/kv.lua" "$SCHEME://127.0.0.1:$port" | tail -n 1)
  local t1; t1=$(cpu_ticks "${SERVER_PIDS[@]}")
  local rss; rss=$(rss_kib "${SERVER_PIDS[@]}")
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

for op in $OPS; do
  for conns in $CONNS; do
    for round in $(seq 1 "$ROUNDS"); do
      for sys in herd etcd; do run "$sys" "$op" "$conns" "$round"; done
    done
  done
done

if [ "$MEMBERS" = 1 ]; then shape="single node"; else shape="$MEMBERS members"; fi
[ "$TLS" = 1 ] && shape+=", TLS (mutual between members)"
python3 "$BENCH_DIR/summarize_registry.py" "$RESULTS" "rounds=$ROUNDS, ${DURATION}s each, $shape, fsync on"
