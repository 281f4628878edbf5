"""Listen on TCP twice and UDP once, talk to ourselves, print OK, exit 0.

An optional argument is how many seconds to stay before exiting.
"""
import socket
import sys
import time

t1 = socket.socket()
t1.bind(("0.0.0.0", 0))
t1.listen()
t2 = socket.socket()
t2.bind(("0.0.0.0", 0))
t2.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 0))

c = socket.create_connection(("127.0.0.1", t1.getsockname()[1]), timeout=5)
conn, _ = t1.accept()
c.sendall(b"ping")
assert conn.recv(4) == b"ping"
u.sendto(b"pong", ("127.0.0.1", u.getsockname()[1]))
u.settimeout(5)
assert u.recv(4) == b"pong"
print("OK", t1.getsockname()[1], u.getsockname()[1], flush=True)
if len(sys.argv) > 1:
    time.sleep(float(sys.argv[1]))
