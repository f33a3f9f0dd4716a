#!/usr/bin/env bash
# Where each proxy's CPU goes on small keep-alive requests, kernel included: perf samples
# (cpu-clock, call graphs) of herd, HAProxy and nginx in turn under the same wrk load, in
# front of the same backend, plus the TCP segments the run put on loopback per request
# and what one bare system call costs on this machine.
#
#   bench/kernel.sh [--workers N] [--duration SECONDS] [--conns C]
#
# Prints Markdown: the split of each proxy's samples (its own code, libc, kernel, and in
# the kernel the send and receive calls, the delivery to the peer socket and the wake-up
# of the peer, which on loopback run inside the sender's send call), and the kernel
# functions with the most samples, side by side.
source "$(dirname "$0")/lib.sh"

WORKERS=1; DURATION=8; CONNS=64
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages wrk nginx haproxy perf
build_herd
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
MAXCONN=1000
prepare_proxy_work

require_free_ports 19101 19102 18100 18101 18102 18110 18111 18112 18120 18121 18122 18199
nginx -c "$WORK/backend-nginx.conf" -p "$WORK" & PIDS+=($!)
wait_port 127.0.0.1:19101; wait_port 127.0.0.1:19102
"$HERD" gateway -c "$WORK/herd.toml" > "$WORK/herd.out" 2> "$WORK/herd.err" & PIDS+=($!); HERD_PID=$!
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 & PIDS+=($!); HAPROXY_PID=$!
nginx -c "$WORK/nginx-proxy.conf" -p "$WORK" & PIDS+=($!); NGINX_PID=$!
for p in 18100 18101 18102; do wait_port 127.0.0.1:$p; done
declare -A PORT=([herd]=18100 [haproxy]=18101 [nginx]=18102)
proc_pids() {
  case "$1" in
    herd) echo "$HERD_PID" ;;
    haproxy) echo "$HAPROXY_PID" ;;
    nginx) pids_of_group "$NGINX_PID" ;;
  esac
}

# What one system call costs here, without the network: a kernel entry and exit.
SYSCALL_NS=$(perf bench syscall basic 2>/dev/null | awk '/usecs\/op/ {printf "%.0f", $1 * 1000}')
log "one bare system call: ${SYSCALL_NS:-?} ns"

for sys in herd haproxy nginx; do
  pids=$(proc_pids "$sys")
  nstat -n > /dev/null 2>&1 || true
  wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:${PORT[$sys]}/" > "$WORK/wrk-$sys.txt" &
  wrk_pid=$!
  sleep 1  # past connection set-up
  perf record -q -e cpu-clock -g -o "$WORK/perf-$sys.data" -p "$(echo $pids | tr ' ' ,)" \
    -- sleep $((DURATION - 2)) > /dev/null 2>&1
  wait "$wrk_pid"
  segs=$(nstat 2>/dev/null | awk '$1 == "TcpOutSegs" {print $2}')
  reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk-$sys.txt")
  echo "$sys ${segs:-0} ${reqs:-0}" >> "$WORK/segments.txt"
  log "$sys: $reqs requests, $segs TCP segments"
  perf report -i "$WORK/perf-$sys.data" --children --sort sym -g none -q 2>/dev/null \
    > "$WORK/children-$sys.txt" || true
  perf report -i "$WORK/perf-$sys.data" --no-children --sort dso,sym -g none -q 2>/dev/null \
    > "$WORK/self-$sys.txt" || true
done

python3 - "$WORK" "${SYSCALL_NS:-}" <<'PY'
import re, sys
work, syscall_ns = sys.argv[1], sys.argv[2]
systems = ["herd", "haproxy", "nginx"]
segs = {}
for line in open(f"{work}/segments.txt"):
    name, s, r = line.split()
    segs[name] = (int(s), int(r))

def children(name):
    """Inclusive share of each symbol in this proxy's samples."""
    out = {}
    for line in open(f"{work}/children-{name}.txt"):
        m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(\S+)", line)
        if m:
            out.setdefault(m.group(4), float(m.group(1)))
    return out

def selfs(name):
    """Self share by (dso, symbol)."""
    rows = []
    for line in open(f"{work}/self-{name}.txt"):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3), m.group(4)))
    return rows

print("Per request (wrk -t1, keep-alive, small responses); TCP segments on loopback counted")
print("by `nstat` over the run. One bare system call (`perf bench syscall basic`): "
      f"{syscall_ns or '?'} ns.\n")
print("| system | requests | TCP segments per request | own code | libc | kernel |")
print("|---|---|---|---|---|---|")
for s in systems:
    rows = selfs(s)
    kernel = sum(r[0] for r in rows if r[2] == "k")
    libc = sum(r[0] for r in rows if r[1].startswith("libc"))
    own = sum(r[0] for r in rows) - kernel - libc
    n_segs, n_reqs = segs.get(s, (0, 0))
    per = n_segs / n_reqs if n_reqs else 0
    print(f"| {s} | {n_reqs:,} | {per:.2f} | {own:.1f}% | {libc:.1f}% | {kernel:.1f}% |")

# Kernel paths, inclusive: the calls themselves, and inside the sends the work done for
# the receiving socket (loopback delivers in the sender's context) and its wake-up. The
# names are the kernel's own functions under each system call (the __x64_sys_* entry
# points do not show in the call graphs).
paths = [
    ("send calls (sendto, writev, write)", ["__sys_sendto", "do_writev", "ksys_write"]),
    ("... of which delivery to the receiving socket (net_rx_action)", ["net_rx_action"]),
    ("... of which waking its reader (sock_def_readable)", ["sock_def_readable"]),
    ("receive calls (recvfrom, readv, read)", ["__sys_recvfrom", "do_readv", "ksys_read"]),
    ("epoll_wait", ["do_epoll_wait"]),
    ("system call entry and exit (do_syscall_64, self)", None),
]
print("\n| kernel path (inclusive share of the proxy's samples) | " + " | ".join(systems) + " |")
print("|---|" + "---|" * len(systems))
ch = {s: children(s) for s in systems}
sf = {s: selfs(s) for s in systems}
for label, syms in paths:
    cells = []
    for s in systems:
        if syms is None:
            v = sum(r[0] for r in sf[s] if r[3] in ("do_syscall_64", "entry_SYSCALL_64",
                                                    "entry_SYSCALL_64_after_hwframe",
                                                    "syscall_exit_to_user_mode"))
        else:
            v = sum(ch[s].get(x, 0.0) for x in syms)
        cells.append(f"{v:.1f}%")
    print(f"| {label} | " + " | ".join(cells) + " |")

print("\nKernel functions with the most samples (self share):\n")
print("| rank | " + " | ".join(systems) + " |")
print("|---|" + "---|" * len(systems))
tops = {s: [r for r in sf[s] if r[2] == "k"][:12] for s in systems}
for i in range(12):
    cells = []
    for s in systems:
        if i < len(tops[s]):
            pct, _, _, sym = tops[s][i]
            cells.append(f"`{sym}` {pct:.1f}%")
        else:
            cells.append("")
    print(f"| {i + 1} | " + " | ".join(cells) + " |")
PY
