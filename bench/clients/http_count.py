"""http_count.py - a fixed number of HTTP/1.1 GETs, for instruction counts.

  python3 http_count.py PORT REQUESTS MODE [CONNS]

MODE "ka": CONNS keep-alive connections share REQUESTS requests; MODE "close":
every request on a new connection with "Connection: close". Each response is
read to its end and checked. Loopback only; exits 1 on any error.
"""
import socket
import sys
import threading

REQ_KA = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
REQ_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def read_response(s, buf):
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise EOFError("connection closed mid-response")
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(rest) < n:
        d = s.recv(4096)
        if not d:
            raise EOFError("connection closed mid-body")
        rest += d
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(head[:40])
    return rest[n:]


def worker(port, count, mode, errors):
    try:
        if mode == "ka":
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            buf = b""
            for _ in range(count):
                s.sendall(REQ_KA)
                buf = read_response(s, buf)
            s.close()
        else:
            for _ in range(count):
                s = socket.create_connection(("127.0.0.1", port), timeout=60)
                s.sendall(REQ_CLOSE)
                read_response(s, b"")
                s.close()
    except Exception as e:  # noqa: BLE001 - any failure fails the count
        errors.append(repr(e))


def main():
    port, total, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    conns = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    errors = []
    per = total // conns
    ts = [threading.Thread(target=worker, args=(port, per, mode, errors)) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        print("http_count:", errors[0], file=sys.stderr)
        sys.exit(1)
    print(per * conns)


main()
