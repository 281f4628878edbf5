# A pre-fork server: the parent binds and listens, forks two workers that
# accept and echo, writes the workers' PIDs to the file named by argv[2]
# and exits. The listening socket lives on in the workers.
import os, socket, sys

port, pidfile = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(16)
pids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        while True:
            c, _ = s.accept()
            c.settimeout(5)
            try:
                data = c.recv(4096)
                c.sendall(data)
            except OSError:
                pass
            c.close()
    pids.append(pid)
with open(pidfile + ".tmp", "w") as f:
    f.write(" ".join(str(p) for p in pids))
os.rename(pidfile + ".tmp", pidfile)
os._exit(0)
