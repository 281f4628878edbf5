"""Double fork: the parent exits at once, the grandchild listens later."""
import os
import socket
import time

if os.fork() > 0:
    os._exit(0)
os.setsid()
if os.fork() > 0:
    os._exit(0)
time.sleep(0.5)
s = socket.socket()
s.bind(("0.0.0.0", 0))
s.listen()
print("PORT", s.getsockname()[1], "PID", os.getpid(), flush=True)
time.sleep(120)
