#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: repeatable to a few parts per
# thousand whatever else the machine does, so it measures a code change where wall-clock
# figures on a shared 2-core machine cannot. User-space instructions only (the kernel's
# share, the same syscalls for every proxy, is not counted).
#
#   bench/callgrind.sh [herd|haproxy|nginx ...]     (default: herd haproxy nginx)
#   TLS=1 bench/callgrind.sh ...                    (the same over HTTPS: TLS termination)
#
# Each proxy runs with one worker under valgrind in front of the benchmark's backend; it
# serves N1 then N2 keep-alive requests in two runs, and (I(N2) - I(N1)) / (N2 - N1) removes
# start-up and shutdown. Writes callgrind.out files to $WORK for callgrind_annotate.
source "$(dirname "$0")/lib.sh"

SYSTEMS=("$@"); [ ${#SYSTEMS[@]} -gt 0 ] || SYSTEMS=(herd haproxy nginx)
N1=${N1:-2000}; N2=${N2:-22000}
ensure_packages nginx haproxy h2load
command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null; }
build_herd
WORKERS=1; MAXCONN=1000
prepare_proxy_work
# nginx under valgrind: one process (no master), so the counts are the worker's.
sed -i 's/^daemon off;/daemon off;\nmaster_process off;/' "$WORK/nginx-proxy.conf"

require_free_ports 19101 19102 18100 18101 18102 18110 18111 18112 18120 18121 18122 18199
nginx -c "$WORK/backend-nginx.conf" -p "$WORK" & PIDS+=($!)
wait_port 127.0.0.1:19101

declare -A PORT=([herd]=18100 [haproxy]=18101 [nginx]=18102)
SCHEME=http
if [ "${TLS:-0}" = 1 ]; then PORT=([herd]=18110 [haproxy]=18111 [nginx]=18112); SCHEME=https; fi
count() { # system requests -> total instructions
  local sys=$1 n=$2 out="$WORK/callgrind.$1.$2" cmd
  case "$sys" in
    herd) cmd=("$HERD" gateway -c "$WORK/herd.toml") ;;
    haproxy) cmd=(haproxy -f "$WORK/haproxy.cfg" -db) ;;
    nginx) cmd=(nginx -c "$WORK/nginx-proxy.conf" -p "$WORK") ;;
  esac
  valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" > "$WORK/$sys.cg.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/${PORT[$sys]}") 2>/dev/null && break; sleep 0.1; done
  h2load --h1 -n "$n" -c 16 -t 1 "$SCHEME://127.0.0.1:${PORT[$sys]}/" > "$WORK/$sys.$n.h2load" 2>&1
  grep -q "$n succeeded" "$WORK/$sys.$n.h2load" || { log "$sys: not every request succeeded"; cat "$WORK/$sys.$n.h2load" >&2; }
  # Dump the counters now: not every proxy exits cleanly enough under valgrind to write
  # them at exit (HAProxy does not).
  callgrind_control -d "$pid" > /dev/null 2>&1 || true
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  # Sum the parts (the dump, and what came after it if the process wrote it at exit).
  cat "$out"* 2>/dev/null | awk '/^totals:/ {t += $2} END {print t + 0}'
}

echo "| system | instructions per request (user space) |"
echo "|---|---|"
for sys in "${SYSTEMS[@]}"; do
  a=$(count "$sys" "$N1"); b=$(count "$sys" "$N2")
  echo "| $sys | $(( (b - a) / (N2 - N1) )) |"
done
