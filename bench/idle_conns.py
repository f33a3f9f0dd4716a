"""Hold N idle keep-alive HTTP connections open to HOST:PORT (each has done one request)."""
import os, socket, sys, time

host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
socks = []
req = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
for i in range(n):
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(req)
        s.recv(4096)
        socks.append(s)
    except OSError as e:
        print(f"stopped at {i}: {e}", file=sys.stderr)
        break
with open(os.path.join(os.path.dirname(ready), os.path.basename(ready).replace(".ready", ".count")), "w") as f:
    f.write(str(len(socks)))
open(ready, "w").close()
time.sleep(120)
