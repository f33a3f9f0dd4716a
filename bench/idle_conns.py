"""Hold N idle keep-alive HTTP connections open to HOST:PORT (each has done one request).
A fifth argument `tls` makes them HTTPS (HTTP/1.1 by ALPN; the certificate is not checked:
the benchmark's own, self-signed)."""
import os, socket, ssl, sys, time

host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tls = None
if len(sys.argv) > 5 and sys.argv[5] == "tls":
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["http/1.1"])
socks = []
req = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
for i in range(n):
    try:
        s = socket.create_connection((host, port), timeout=5)
        if tls:
            s = tls.wrap_socket(s, server_hostname="bench.local")
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
