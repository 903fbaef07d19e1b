"""The kernel side of a live transfer under attack: connects to HOST:PORT and sends TOTAL
bytes of the pattern byte[i] = i % 251, paced (16 KiB every 10 ms) so the connection is busy
for a while. The last GATE bytes wait for one byte from the server, which the server sends
once the attack on the connection is over: so the attack always hits a live, unfinished
transfer. Then it half-closes and reads the server's verdict to EOF.

usage: gated_sender.py HOST PORT TOTAL GATE
prints: "port P" (its local port, as soon as it is connected), then the server's reply
"""
import socket
import sys
import time

host, port, total, gate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = (bytes(range(251)) * (total // 251 + 1))[:total]
s = socket.create_connection((host, port), timeout=30)
s.settimeout(30)
print("port %d" % s.getsockname()[1], flush=True)
chunk = 16384
pos = 0
while pos < total - gate:
    end = min(pos + chunk, total - gate)
    s.sendall(data[pos:end])
    pos = end
    time.sleep(0.01)
if s.recv(1) != b"g":
    sys.exit("no go-ahead from the server")
s.sendall(data[pos:])
s.shutdown(socket.SHUT_WR)
reply = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    reply += b
s.close()
print(reply.decode(errors="replace").strip())
