#!/usr/bin/env python3
"""Watch event delivery latency, herd beside a single-node etcd (both fsync before they
acknowledge a write): a watcher streams a key prefix while one client writes N keys one
after another. For each key: the time from sending the write to the watcher holding its
event, which is the write's commit plus the delivery.

Usage: bench/watch.py HERD_BINARY WORK_DIR [--writes N]
Prints a Markdown table; stops every process it started.
"""
from pyutil import require_free_ports, wait_port
import base64, http.client, json, os, shutil, statistics, subprocess, sys, threading, time

HERD, WORK = sys.argv[1], sys.argv[2]
require_free_ports([17450, 12450, 12460])
N = int(sys.argv[sys.argv.index("--writes") + 1]) if "--writes" in sys.argv else 2000
procs = []


def start(args, log, env=None):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)
    procs.append(p)
    return p




def b64(s):
    return base64.b64encode(s.encode()).decode()


class Herd:
    port = 17450

    def start(self):
        start([HERD, "server", "--data-dir", f"{WORK}/herd-watch", "--listen",
               f"127.0.0.1:{self.port}"], f"{WORK}/herd-watch.log")
        wait_port(self.port)

    def stream(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("GET", "/v1/watch/wb/?prefix")
        r = c.getresponse()
        assert r.status == 200, r.status
        return r

    def keys(self, line):
        v = json.loads(line)
        return [v["kv"]["key"]] if v.get("type") == "put" else []

    def put(self, conn, key):
        conn.request("PUT", f"/v1/kv/{key}", body=b"v")
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status


class Etcd:
    port = 12450

    def start(self):
        start(["etcd", "--name", "w", "--data-dir", f"{WORK}/etcd-watch",
               "--listen-client-urls", f"http://127.0.0.1:{self.port}",
               "--advertise-client-urls", f"http://127.0.0.1:{self.port}",
               "--listen-peer-urls", "http://127.0.0.1:12460",
               "--initial-advertise-peer-urls", "http://127.0.0.1:12460",
               "--initial-cluster", "w=http://127.0.0.1:12460", "--log-level", "error"],
              f"{WORK}/etcd-watch.log", env=dict(os.environ, GOMAXPROCS="2"))
        wait_port(self.port)

    def stream(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = json.dumps({"create_request": {"key": b64("wb/"), "range_end": b64("wb0")}})
        c.request("POST", "/v3/watch", body=body)
        r = c.getresponse()
        assert r.status == 200, r.status
        return r

    def keys(self, line):
        v = json.loads(line).get("result", {})
        return [base64.b64decode(e["kv"]["key"]).decode() for e in v.get("events", [])]

    def put(self, conn, key):
        conn.request("POST", "/v3/kv/put", body=json.dumps({"key": b64(key), "value": b64("v")}))
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status


def measure(system):
    system.start()
    seen = {}
    stream = system.stream()

    def follow():
        try:
            for line in stream:
                now = time.time()
                if line.strip():
                    for k in system.keys(line):
                        seen.setdefault(k, now)
        except Exception:
            pass

    threading.Thread(target=follow, daemon=True).start()
    conn = http.client.HTTPConnection("127.0.0.1", system.port, timeout=10)
    # The watch is live once a first write's event comes through.
    deadline = time.time() + 10
    while "wb/ready" not in seen and time.time() < deadline:
        system.put(conn, "wb/ready")
        time.sleep(0.05)
    sent = {}
    for i in range(N):
        key = f"wb/{i}"
        sent[key] = time.time()
        system.put(conn, key)
    deadline = time.time() + 10
    while len([k for k in sent if k in seen]) < N and time.time() < deadline:
        time.sleep(0.01)
    lat = sorted((seen[k] - sent[k]) * 1000 for k in sent if k in seen)
    for p in procs:
        p.kill()
        p.wait()
    procs.clear()
    return lat, N - len(lat)


def pct(vals, q):
    return vals[min(len(vals) - 1, int(round(q / 100 * (len(vals) - 1))))]


try:
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    print(f"### Watch event delivery ({N} sequential writes, one watcher on the prefix)\n")
    print("| system | p50 ms | p99 ms | p99.9 ms | max ms | events missing |")
    print("|---|---|---|---|---|---|")
    for name, system in [("herd", Herd()), ("etcd", Etcd())]:
        lat, missing = measure(system)
        if lat:
            print(f"| {name} | {pct(lat, 50):.2f} | {pct(lat, 99):.2f} | {pct(lat, 99.9):.2f} "
                  f"| {lat[-1]:.2f} | {missing} |")
        else:
            print(f"| {name} | n/a | n/a | n/a | n/a | {missing} |")
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
