"""Hold N idle keep-alive HTTP connections open to HOST:PORT (each has done one request).
A fifth argument `tls` makes them HTTPS (HTTP/1.1 by ALPN), `h2` HTTP/2 over TLS (h2 by
ALPN; one GET on stream 1, then the connection stays open with no stream). The
certificate is not checked: the benchmark's own, self-signed."""
import os, socket, ssl, struct, sys, time

host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
mode = sys.argv[5] if len(sys.argv) > 5 else "plain"
tls = None
if mode in ("tls", "h2"):
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["h2" if mode == "h2" else "http/1.1"])


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_get(s):
    """The client preface, an empty SETTINGS, and GET / on stream 1 (HPACK: indexed :method
    GET, :scheme https, :path /; :authority as a literal). Reads frames until stream 1
    ends, acknowledging the server's SETTINGS on the way."""
    authority = host.encode()
    block = bytes([0x82, 0x87, 0x84, 0x01, len(authority)]) + authority
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0) + frame(1, 0x5, 1, block))
    buf = b""
    while True:
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            length, kind, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            buf = buf[9 + length:]
            if kind == 4 and not flags & 1:
                s.sendall(frame(4, 1, 0))
            if kind == 7:
                raise OSError("GOAWAY from the server")
            if stream == 1 and kind in (0, 1) and flags & 1:
                return
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed before the response ended")
        buf += chunk


socks = []
req = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
for i in range(n):
    try:
        s = socket.create_connection((host, port), timeout=5)
        if tls:
            s = tls.wrap_socket(s, server_hostname="bench.local")
        if mode == "h2":
            if s.selected_alpn_protocol() != "h2":
                raise OSError(f"ALPN chose {s.selected_alpn_protocol()}, not h2")
            h2_get(s)
        else:
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
