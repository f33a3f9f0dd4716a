"""Helpers shared by the Python benchmark scripts (cluster.py, watch.py)."""
import socket
import time


def require_free_ports(ports):
    """Refuse to run when anything already listens on a port the benchmark needs."""
    busy = []
    for port in ports:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            busy.append(port)
        except OSError:
            pass
    if busy:
        raise SystemExit(
            f"refusing to run: port(s) {busy} on 127.0.0.1 already in use; "
            "stop what listens there (ss -ltnp) and retry")


def wait_port(port, timeout=15):
    """Until something accepts connections on 127.0.0.1:port."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} never opened")
