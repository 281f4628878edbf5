"""Open sockets, print their ports, sleep until killed.

Each argument is KIND,ADDR,PORT with KIND one of tcp4, tcp6, tcp6only, udp4,
udp6; or "udpclient", a UDP socket that only sendto()s (the kernel binds it
to an ephemeral port). Prints "SOCK <i> <port>" per argument, then
"READY <pid>".
"""
import os
import socket
import sys
import time

socks = []
for i, spec in enumerate(sys.argv[1:]):
    if spec == "udpclient":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"x", ("127.0.0.1", 9))
    else:
        kind, addr, port = spec.split(",")
        fam = socket.AF_INET if kind.endswith("4") else socket.AF_INET6
        typ = socket.SOCK_STREAM if kind.startswith("tcp") else socket.SOCK_DGRAM
        s = socket.socket(fam, typ)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if kind.endswith("only") else 0)
        s.bind((addr, int(port)))
        if typ == socket.SOCK_STREAM:
            s.listen()
    socks.append(s)
    print("SOCK", i, s.getsockname()[1], flush=True)
print("READY", os.getpid(), flush=True)
time.sleep(120)
