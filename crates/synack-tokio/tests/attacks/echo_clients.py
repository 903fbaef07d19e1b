"""Real kernel clients: THREADS threads, each opening PER_THREAD connections one after the
other to HOST:PORT, sending a line, reading its echo to EOF and closing. Each connection has
TIMEOUT seconds for everything (connect included), so a stack that stops answering fails
this script within a bounded time instead of hanging it.

usage: echo_clients.py HOST PORT THREADS PER_THREAD TIMEOUT
prints: "ok N of M", and one line on stderr per failure; exits 0 only if every one succeeded
"""
import socket
import sys
import threading

host, port = sys.argv[1], int(sys.argv[2])
threads, per_thread, timeout = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
ok = []
lock = threading.Lock()


def one(t, i):
    msg = b"hello %d/%d from the kernel\n" % (t, i)
    try:
        s = socket.create_connection((host, port), timeout=timeout)
        s.settimeout(timeout)
        s.sendall(msg)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
        s.close()
        if got != msg:
            print("conn %d/%d: echoed %r" % (t, i, got), file=sys.stderr)
            return
        with lock:
            ok.append((t, i))
    except OSError as e:
        print("conn %d/%d: %r" % (t, i, e), file=sys.stderr)


def run(t):
    for i in range(per_thread):
        one(t, i)


ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
for th in ts:
    th.start()
for th in ts:
    th.join()
total = threads * per_thread
print("ok %d of %d" % (len(ok), total))
sys.exit(0 if len(ok) == total else 1)
