#!/usr/bin/env python3
"""Cluster management timings (issue 14): how long herd takes to run what it is told.

  apply      `PUT /v1/deployments/web` of N instances of `herd demo-app` (N = 1, 10, 50) to
             every instance in state Run (health passed, in the catalog), two agents on
             this machine. Then the service is stopped and the next N applied.
  rolling    a 10-instance service updated to a new version (max_parallel = 1 and = 5,
             min_healthy_time = 1s): apply to every instance Run at the new version.

Usage: bench/deploy.py HERD_BINARY WORK_DIR [--trials N]
Prints Markdown tables; stops every process it started. Nothing to compare it with runs
on this machine (Nomad and Kubernetes are not Debian packages), so the figures stand alone.
"""
from pyutil import require_free_ports, wait_port
import http.client, json, os, shutil, statistics, subprocess, sys, time

HERD, WORK = os.path.abspath(sys.argv[1]), sys.argv[2]
SERVER = 17470
require_free_ports([SERVER])
TRIALS = int(sys.argv[sys.argv.index("--trials") + 1]) if "--trials" in sys.argv else 3
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
procs = []


def start(args, log):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    procs.append(p)
    return p


def call(method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", SERVER, timeout=10)
    c.request(method, path, body=body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def manifest(version, count, parallel=1):
    return f'''name = "web"
version = "{version}"
[run]
command = "{HERD}"
args = ["demo-app", "--version", "{version}"]
ports = ["http"]
stop_timeout = "5s"
[instances]
count = {count}
min = 1
max = 100
[health]
kind = "http"
path = "/healthz"
interval = "200ms"
timeout = "200ms"
healthy_threshold = 1
[update]
max_parallel = {parallel}
min_healthy_time = "1s"
healthy_deadline = "60s"
'''


def wait_run(count, version, limit=120):
    t0 = time.time()
    while time.time() - t0 < limit:
        st, data = call("GET", "/v1/deployments/web?serializable")
        if st == 200:
            d = json.loads(data)
            inst = d["instances"]
            if len(inst) == count and all(i["state"] == "Run" and i["version"] == version for i in inst):
                return time.time()
        time.sleep(0.02)
    raise SystemExit(f"{count} x {version} not Run within {limit}s")


def wait_gone(limit=60):
    t0 = time.time()
    while time.time() - t0 < limit:
        st, data = call("GET", "/v1/kv/herd/instances/?prefix")
        if st == 200 and not json.loads(data)["kvs"]:
            return
        time.sleep(0.05)
    raise SystemExit("instances did not stop")


def main():
    start([HERD, "server", "--listen", f"127.0.0.1:{SERVER}", "--data-dir", f"{WORK}/server"],
          f"{WORK}/server.log")
    wait_port(SERVER)
    for i, ports in enumerate(["24000-24499", "24500-24999"]):
        start([HERD, "agent", "--server", f"127.0.0.1:{SERVER}", "--data-dir", f"{WORK}/agent{i}",
               "--name", f"node-{i}", "--ports", ports], f"{WORK}/agent{i}.log")
    while True:
        st, data = call("GET", "/v1/nodes")
        if st == 200 and len(json.loads(data)["nodes"]) == 2:
            break
        time.sleep(0.05)

    print("| instances | apply -> all Run, median (min-max) s |")
    print("|---|---|")
    for n in (1, 10, 50):
        times = []
        for _ in range(TRIALS):
            t0 = time.time()
            st, data = call("PUT", "/v1/deployments/web", manifest("1.0.0", n).encode())
            assert st == 200, data
            times.append(wait_run(n, "1.0.0") - t0)
            call("DELETE", "/v1/deployments/web")
            wait_gone()
        print(f"| {n} | {statistics.median(times):.2f} ({min(times):.2f}-{max(times):.2f}) |")

    print()
    print("| rolling update of 10 instances | apply -> all Run at the new version, median (min-max) s |")
    print("|---|---|")
    for parallel in (1, 5):
        times = []
        for t in range(TRIALS):
            call("PUT", "/v1/deployments/web", manifest("1.0.0", 10, parallel).encode())
            wait_run(10, "1.0.0")
            t0 = time.time()
            call("PUT", "/v1/deployments/web", manifest("2.0.0", 10, parallel).encode())
            times.append(wait_run(10, "2.0.0") - t0)
            call("DELETE", "/v1/deployments/web")
            wait_gone()
        print(f"| max_parallel = {parallel}, min_healthy_time = 1s | "
              f"{statistics.median(times):.2f} ({min(times):.2f}-{max(times):.2f}) |")


try:
    main()
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
