#!/usr/bin/env python3
"""10,000 registered instances heartbeating, herd beside a single-node etcd (fsync on).

Each instance lives on a lease with a 30 s TTL (herd: a catalog registration; etcd: a
lease grant and a put attached to it; 16 client processes register them) and is kept
alive every 5 s: 2,000 keepalives a second in all, sent by 4 client processes over
keep-alive connections. (The TTL is long so that registering all of them, which takes
etcd several seconds, cannot let the first ones expire before their first keepalive.) After the heartbeat phase, every instance must
still be registered. Figures: registration time, keepalive latency, keepalives that
failed, instances alive at the end, and the server's CPU.

Usage: bench/heartbeats.py HERD_BINARY WORK_DIR [--instances N] [--seconds S]
Prints a Markdown table; stops every process it started.
"""
from pyutil import wait_port
import base64, http.client, json, multiprocessing, os, shutil, subprocess, sys, time

HERD, WORK = sys.argv[1], sys.argv[2]
N = int(sys.argv[sys.argv.index("--instances") + 1]) if "--instances" in sys.argv else 10000
SECONDS = int(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 20
TTL_S, EVERY_S, CLIENTS, REGISTRARS = 30, 5.0, 4, 16
procs = []


def b64(s):
    return base64.b64encode(s.encode()).decode()


def call(conn, method, path, body=None):
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, r.read()


class Herd:
    name, port = "herd", 17470

    def start(self):
        p = subprocess.Popen([HERD, "server", "--data-dir", f"{WORK}/herd-hb", "--listen",
                              f"127.0.0.1:{self.port}"], stdout=subprocess.DEVNULL,
                             stderr=open(f"{WORK}/herd-hb.log", "w"))
        wait_port(self.port)
        # A fresh single node elects itself a moment after it listens.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        deadline = time.time() + 15
        while time.time() < deadline:
            st, b = call(conn, "GET", "/status")
            if st == 200 and json.loads(b).get("role") == "leader":
                break
            time.sleep(0.05)
        return p

    def register(self, conn, i):
        body = json.dumps({"address": "127.0.0.1", "port": 10000 + i % 50000, "ttl_s": TTL_S})
        st, b = call(conn, "PUT", f"/v1/services/hb/instances/i{i}", body)
        assert st == 200, (st, b)
        return json.loads(b)["lease"]

    def keepalive(self, conn, lease):
        st, _ = call(conn, "POST", f"/v1/lease/{lease}/keepalive")
        return st == 200

    def alive(self, conn):
        st, b = call(conn, "GET", "/v1/services/hb")
        return len(json.loads(b)["instances"]) if st == 200 else 0


class Etcd:
    name, port = "etcd", 12470

    def start(self):
        p = subprocess.Popen(["etcd", "--name", "hb", "--data-dir", f"{WORK}/etcd-hb",
                              "--listen-client-urls", f"http://127.0.0.1:{self.port}",
                              "--advertise-client-urls", f"http://127.0.0.1:{self.port}",
                              "--listen-peer-urls", "http://127.0.0.1:12480",
                              "--initial-advertise-peer-urls", "http://127.0.0.1:12480",
                              "--initial-cluster", "hb=http://127.0.0.1:12480",
                              "--log-level", "error"],
                             stdout=subprocess.DEVNULL, stderr=open(f"{WORK}/etcd-hb.log", "w"),
                             env=dict(os.environ, GOMAXPROCS="2"))
        wait_port(self.port)
        return p

    def register(self, conn, i):
        st, b = call(conn, "POST", "/v3/lease/grant", json.dumps({"TTL": TTL_S}))
        assert st == 200, (st, b)
        lease = json.loads(b)["ID"]
        body = json.dumps({"key": b64(f"hb/i{i}"), "value": b64("127.0.0.1"), "lease": lease})
        st, b = call(conn, "POST", "/v3/kv/put", body)
        assert st == 200, (st, b)
        return lease

    def keepalive(self, conn, lease):
        st, b = call(conn, "POST", "/v3/lease/keepalive", json.dumps({"ID": lease}))
        # An expired lease answers 200 with TTL 0 (or absent).
        return st == 200 and int(json.loads(b).get("result", {}).get("TTL", 0)) > 0

    def alive(self, conn):
        body = json.dumps({"key": b64("hb/"), "range_end": b64("hb0"), "count_only": True})
        st, b = call(conn, "POST", "/v3/kv/range", body)
        return int(json.loads(b).get("count", 0)) if st == 200 else 0


def register_part(system, ids, out):
    conn = http.client.HTTPConnection("127.0.0.1", system.port, timeout=10)
    out.put([(i, system.register(conn, i)) for i in ids])


def heartbeat_part(system, leases, seconds, out):
    """Keep each lease alive every EVERY_S seconds, paced evenly; report latencies (ms)
    and failures."""
    conn = http.client.HTTPConnection("127.0.0.1", system.port, timeout=10)
    gap = EVERY_S / max(len(leases), 1)
    lat, failed = [], 0
    start = time.time()
    k = 0
    while time.time() - start < seconds:
        due = start + k * gap
        now = time.time()
        if due > now:
            time.sleep(due - now)
        lease = leases[k % len(leases)]
        t = time.time()
        try:
            ok = system.keepalive(conn, lease)
        except Exception:
            ok = False
            conn = http.client.HTTPConnection("127.0.0.1", system.port, timeout=10)
        lat.append((time.time() - t) * 1000)
        failed += 0 if ok else 1
        k += 1
    out.put((lat, failed, k / (time.time() - start)))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(vals, q):
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(round(q / 100 * (len(vals) - 1))))]


def run(system):
    server = system.start()
    procs.append(server)
    q = multiprocessing.Queue()
    t0 = time.time()
    parts = [list(range(c, N, REGISTRARS)) for c in range(REGISTRARS)]
    workers = [multiprocessing.Process(target=register_part, args=(system, ids, q)) for ids in parts]
    for w in workers:
        w.start()
    leases = []
    for _ in workers:
        leases += q.get()
    for w in workers:
        w.join()
    registered_s = time.time() - t0
    lease_ids = [lease for _, lease in sorted(leases)]
    cpu0 = cpu_seconds(server.pid)
    chunks = [lease_ids[c::CLIENTS] for c in range(CLIENTS)]
    workers = [multiprocessing.Process(target=heartbeat_part, args=(system, ch, SECONDS, q))
               for ch in chunks]
    for w in workers:
        w.start()
    lat, failed, rate = [], 0, 0.0
    for _ in workers:
        l, f, r = q.get()
        lat += l
        failed += f
        rate += r
    for w in workers:
        w.join()
    cpu = cpu_seconds(server.pid) - cpu0
    alive = system.alive(http.client.HTTPConnection("127.0.0.1", system.port, timeout=10))
    server.kill()
    server.wait()
    return dict(registered_s=registered_s, rate=rate, p50=pct(lat, 50), p99=pct(lat, 99),
                p999=pct(lat, 99.9), failed=failed, alive=alive, cpu_pct=cpu / SECONDS * 100)


if __name__ == "__main__":
    try:
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        print(f"### {N:,} instances heartbeating (TTL {TTL_S} s, a keepalive every {EVERY_S:g} s, "
              f"{SECONDS} s, {CLIENTS} client processes)\n")
        print("| system | register all (s) | keepalives/s | p50 ms | p99 ms | p99.9 ms | failed | alive at the end | server CPU % |")
        print("|---|---|---|---|---|---|---|---|---|")
        for system in [Herd(), Etcd()]:
            r = run(system)
            print(f"| {system.name} | {r['registered_s']:.1f} | {r['rate']:,.0f} | {r['p50']:.2f} | "
                  f"{r['p99']:.2f} | {r['p999']:.2f} | {r['failed']} | {r['alive']:,} / {N:,} | "
                  f"{r['cpu_pct']:.0f} |")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
