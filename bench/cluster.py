#!/usr/bin/env python3
"""Registry timings that wrk cannot measure, side by side where a peer exists:

  failover     3-member cluster, a stream of writes, kill -9 the leader: time until the next
               write is acknowledged (herd and etcd, the same client loop for both).
  routable     herd only: time from a service registration being acknowledged by the
               registry to the first request the gateway routes to that instance.

Usage: bench/cluster.py HERD_BINARY WORK_DIR [--trials N] [--routable-trials M]
Prints Markdown tables; stops every process it started.
"""
from pyutil import require_free_ports, wait_port
import base64, http.client, json, os, signal, socket, statistics, subprocess, sys, time

HERD, WORK = sys.argv[1], sys.argv[2]
require_free_ports([17410, 17411, 17412, 12410, 12411, 12412, 12420, 12421, 12422, 17430, 18130])
os.makedirs(WORK, exist_ok=True)
TRIALS = int(sys.argv[sys.argv.index("--trials") + 1]) if "--trials" in sys.argv else 5
# A p99 needs many samples: registration -> routable is cheap to repeat.
ROUTABLE_TRIALS = (int(sys.argv[sys.argv.index("--routable-trials") + 1])
                   if "--routable-trials" in sys.argv else 100)
procs = []


def start(args, log, env=None):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(log, "w"), env=env)
    procs.append(p)
    return p


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()




def request(port, method, path, body=None, timeout=1.0, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def pctl(vals, q):
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(round(q / 100 * (len(vals) - 1))))]


# ------------------------------------------------------------------ herd cluster

def herd_cluster():
    ports = [17410, 17411, 17412]
    nodes = {}
    for i, port in enumerate(ports):
        args = [HERD, "server", "--data-dir", f"{WORK}/herd-{port}", "--listen", f"127.0.0.1:{port}"]
        if i > 0:
            args += ["--join", f"127.0.0.1:{ports[0]}"]
        nodes[port] = start(args, f"{WORK}/herd-{port}.log")
        wait_port(port)
        nodes[port].stdout.readline()
    return ports, nodes


def herd_leader(ports):
    for port in ports:
        try:
            s, b = request(port, "GET", "/status", timeout=0.3)
            v = json.loads(b)
            if v.get("role") == "leader":
                return port
        except Exception:
            pass
    return None


def herd_write(port, key):
    s, _ = request(port, "PUT", f"/v1/kv/{key}", body=b"v", timeout=1.0)
    return s == 200


def etcd_cluster():
    names = ["e1", "e2", "e3"]
    client = {"e1": 12410, "e2": 12411, "e3": 12412}
    peer = {"e1": 12420, "e2": 12421, "e3": 12422}
    initial = ",".join(f"{n}=http://127.0.0.1:{peer[n]}" for n in names)
    env = dict(os.environ, GOMAXPROCS="2")
    nodes = {}
    for n in names:
        nodes[client[n]] = start([
            "etcd", "--name", n, "--data-dir", f"{WORK}/etcd-{n}",
            "--listen-client-urls", f"http://127.0.0.1:{client[n]}",
            "--advertise-client-urls", f"http://127.0.0.1:{client[n]}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer[n]}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[n]}",
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--heartbeat-interval", "100", "--election-timeout", "1000", "--log-level", "error",
        ], f"{WORK}/etcd-{n}.log", env=env)
    for port in client.values():
        wait_port(port)
    return list(client.values()), nodes


def etcd_leader(ports):
    for port in ports:
        try:
            s, b = request(port, "POST", "/v3/maintenance/status", body=b"{}", timeout=0.3)
            v = json.loads(b)
            if v.get("leader") and v.get("header", {}).get("member_id") == v.get("leader"):
                return port
        except Exception:
            pass
    return None


def etcd_write(port, key):
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(b"v").decode()}).encode()
    s, _ = request(port, "POST", "/v3/kv/put", body=body, timeout=1.0)
    return s == 200


def failover(kind):
    if kind == "herd":
        ports, nodes = herd_cluster()
        leader_of, write = herd_leader, herd_write
    else:
        ports, nodes = etcd_cluster()
        leader_of, write = etcd_leader, etcd_write
    times = []
    for trial in range(TRIALS):
        deadline = time.time() + 20
        leader = None
        while leader is None and time.time() < deadline:
            leader = leader_of(ports)
            time.sleep(0.05)
        if leader is None:
            raise RuntimeError(f"{kind}: no leader")
        # Warm: a few writes through every node so clients have connections.
        for _ in range(20):
            write(leader, f"warm/{trial}")
        victim = nodes[leader]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.time()
        others = [p for p in ports if p != leader]
        n = 0
        done = None
        while time.time() - killed_at < 15 and done is None:
            for p in others:
                n += 1
                try:
                    if write(p, f"after/{trial}/{n}"):
                        done = time.time() - killed_at
                        break
                except Exception:
                    pass
            time.sleep(0.005)
        times.append(done if done is not None else float("inf"))
        print(f"[bench] {kind} failover trial {trial + 1}: {times[-1] * 1000:.0f} ms", file=sys.stderr)
        # Bring the victim back with its data dir so the cluster is whole again.
        procs.remove(victim)
        args = victim.args
        if kind == "herd":
            args = [a for a in args]
            if "--join" in args:
                j = args.index("--join")
                args = args[:j] + args[j + 2:]
        else:
            args = [a if a != "new" else "existing" for a in args]
        nodes[leader] = start(args, f"{WORK}/{kind}-{leader}-r{trial}.log",
                              env=dict(os.environ, GOMAXPROCS="2") if kind == "etcd" else None)
        wait_port(leader)
        time.sleep(1.0)
    for p in list(nodes.values()):
        p.kill()
        p.wait()
    return times


# ------------------------------------------------------------------ registration -> routable

def routable():
    # One instance port per trial: a tiny HTTP server per port answering its own port.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = str(self.server.server_address[1]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    servers = []
    for _ in range(ROUTABLE_TRIALS):
        s = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
    reg = start([HERD, "server", "--data-dir", f"{WORK}/herd-routable", "--listen", "127.0.0.1:17430"],
                f"{WORK}/herd-routable.log")
    wait_port(17430)
    reg.stdout.readline()
    cfg = f"{WORK}/routable.toml"
    with open(cfg, "w") as f:
        f.write('[gateway]\nworkers = 1\n[registry]\nservers = ["127.0.0.1:17430"]\n'
                '[[listeners]]\nname = "web"\nbind = "127.0.0.1:18130"\n'
                '[[routes]]\nbackend = "app"\n[backends.app]\nservice = "lat"\nretries = 0\n')
    start([HERD, "gateway", "-c", cfg], f"{WORK}/gw-routable.log")
    wait_port(18130)
    conn = http.client.HTTPConnection("127.0.0.1", 18130, timeout=2)
    times = []
    for i, s in enumerate(servers):
        port = s.server_address[1]
        if i > 0:
            request(17430, "DELETE", f"/v1/services/lat/instances/i{i - 1}")
        body = json.dumps({"address": "127.0.0.1", "port": port, "ttl_s": 60}).encode()
        st, _ = request(17430, "PUT", f"/v1/services/lat/instances/i{i}", body=body)
        acked = time.time()
        assert st == 200
        while time.time() - acked < 5:
            conn.request("GET", "/")
            r = conn.getresponse()
            b = r.read()
            if r.status == 200 and b == str(port).encode():
                times.append(time.time() - acked)
                break
        else:
            times.append(float("inf"))
    for s in servers:
        s.shutdown()
    return times


def ms(v):
    return f"{v * 1000:.0f}" if v != float("inf") else "never"


try:
    print("### Registry cluster timings\n")
    print(f"{TRIALS} trials each. Failover: 3 members on loopback, kill -9 of the leader, time until the next acknowledged write.\n")
    print("| measurement | system | median ms | min ms | max ms |")
    print("|---|---|---|---|---|")
    for kind in ["herd", "etcd"]:
        t = failover(kind)
        print(f"| leader failover | {kind} | {ms(statistics.median(t))} | {ms(min(t))} | {ms(max(t))} |")
    t = routable()
    print(f"| registration → routed by gateway ({len(t)} trials) | herd | {ms(statistics.median(t))} (p99 {ms(pctl(t, 99))}) | {ms(min(t))} | {ms(max(t))} |")
finally:
    stop_all()
