"""Pre-fork server: listen, fork two workers that keep the socket, exit 7."""
import os
import socket
import time

s = socket.socket()
s.bind(("0.0.0.0", 0))
s.listen()
print("PORT", s.getsockname()[1], flush=True)
workers = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    workers.append(pid)
print("WORKERS", *workers, flush=True)
os._exit(7)
