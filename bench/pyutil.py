"""Helpers shared by the Python benchmark scripts (cluster.py, watch.py)."""
import socket
import time


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
