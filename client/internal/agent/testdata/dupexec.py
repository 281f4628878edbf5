"""The socket moves to fd 9 of a forked child that execs sleep; the parent exits."""
import os
import shutil
import socket

s = socket.socket()
s.bind(("0.0.0.0", 0))
s.listen()
port = s.getsockname()[1]
pid = os.fork()
if pid == 0:
    os.dup2(s.fileno(), 9, inheritable=True)
    s.close()
    os.execv(shutil.which("sleep"), ["sleep", "120"])
print("PORT", port, "CHILD", pid, flush=True)
os._exit(0)
