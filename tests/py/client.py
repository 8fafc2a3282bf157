"""Drives a thread9 srv with python-9p, a 9P client nobody here wrote.

Usage: client.py SCENARIO SOCKET. Prints one line per observation; the
Rust test (tests/interop.rs) plays the file servers and checks both these
lines and the requests its files received.
"""

import socket
import sys
import threading
from dataclasses import replace

from py9p import Client, Dir, Tflush, Rflush, Tread, Rread
from py9p.client import RemoteError

OREAD, OWRITE, ORDWR = 0, 1, 2


def out(*words):
    print(*words, flush=True)


def error_of(f, *args):
    try:
        f(*args)
    except RemoteError as e:
        return str(e)
    return "no error"


def entries(data):
    """Splits a directory read into whole entries (size[2] then the rest)."""
    dirs = []
    while data:
        n = int.from_bytes(data[:2], "little") + 2
        assert n <= len(data), "an entry split across reads"
        dirs.append(Dir.from_bytes(data[:n]))
        data = data[n:]
    return dirs


def session(path, msize=8192):
    c = Client.connect_unix(path, msize=msize)
    v = c.negotiate()
    c.attach(0)
    return c, v


def sequence(path):
    c, v = session(path, msize=1 << 24)
    out("version", v.msize, v.version)
    c.walk(0, 1, "data")
    qid, iounit = c.open(1, ORDWR)
    out("open", qid.type, qid.path, iounit)
    out("read", c.read(1, 100, 0).decode())
    out("read", c.read(1, 4, 0).decode())
    out("write", c.write(1, b"abc", 5))
    c.clunk(1)
    c.walk(0, 2, "data")
    c.open(2, OREAD)
    out("read", c.read(2, 100, 11).decode() or "<eof>")
    c.clunk(2)
    st = c.stat(0)
    out("root", st.name, oct(st.mode), st.uid)
    c.walk(0, 3, "data")
    st = c.stat(3)
    out("stat", st.name, oct(st.mode), st.uid, st.gid, st.length, st.qid.path)


def directory(path):
    c, _ = session(path)
    c.walk(0, 1, ())
    c.open(1, OREAD)
    names, reads, offset = [], 0, 0
    while True:
        data = c.read(1, 150, offset)
        if not data:
            break
        reads += 1
        offset += len(data)
        names += [d.name for d in entries(data)]
    out("reads", reads)
    out("names", " ".join(names))


def errors(path):
    c, _ = session(path)
    c.walk(0, 1, "f")
    out("unopened", error_of(c.read, 1, 10, 0))
    c.open(1, ORDWR)
    out("read", error_of(c.read, 1, 10, 0))
    out("write", error_of(c.write, 1, b"x", 0))
    out("missing", error_of(c.walk, 0, 2, "nope"))
    out("create", error_of(c.create, 0, "new", 0o666, ORDWR))
    c.walk(0, 3, "f")
    out("remove", error_of(c.remove, 3))
    out("removed fid", error_of(c.stat, 3))
    out("wstat", error_of(c.wstat, 0, replace(c.stat(0), mode=0o777)))
    out("walk open", error_of(c.walk, 1, 4, ()))
    out("fid in use", error_of(c.walk, 0, 1, ()))


def held(path):
    """A held read on one fid; a read on another fid, a write, and another
    client are all served meanwhile."""
    c, _ = session(path)
    other, _ = session(path)
    c.walk(0, 1, "slow")
    c.open(1, OREAD)
    c.walk(0, 2, "fast")
    c.open(2, OREAD)
    other.walk(0, 1, "fast")
    other.open(1, ORDWR)
    slow = {}

    def wait_slow():
        slow["data"] = c.read(1, 100, 0).decode()

    t = threading.Thread(target=wait_slow)
    t.start()
    out("fast", c.read(2, 100, 0).decode())
    out("other", other.read(1, 100, 0).decode())
    # Tells the server the others got through; only then does it answer.
    other.write(1, b"go", 0)
    t.join()
    out("slow", slow["data"])


def hungup(path):
    c, _ = session(path)
    c.walk(0, 1, "f")
    c.open(1, ORDWR)
    out("pending", error_of(c.read, 1, 10, 0))
    out("later", error_of(c.write, 1, b"x", 0))
    out("walk", error_of(c.walk, 0, 2, "f"))
    c.walk(0, 3, ())
    c.open(3, OREAD)
    out("listing", len(entries(c.read(3, 4096, 0))))


def flush(path):
    c, _ = session(path)
    c.walk(0, 1, "slow")
    c.open(1, OREAD)
    c.walk(0, 2, "gate")
    c.open(2, ORDWR)
    outcome = {}

    def held_read():
        try:
            r = c.rpc(Tread(fid=1, offset=0, count=10), Rread, tag=77)
            outcome["a"] = "answered " + r.data.decode()
        except Exception as e:  # the client's close ends the wait
            outcome["a"] = "closed"

    t = threading.Thread(target=held_read)
    t.start()
    # The server answers the gate once it holds the slow read.
    out("gate", c.read(2, 10, 0).decode())
    r = c.rpc(Tflush(oldtag=77), Rflush, tag=78)
    out("flushed", type(r).__name__)
    # Now the server replies to the flushed read; no Rread may follow.
    c.write(2, b"late", 0)
    out("stat", c.stat(1).name)
    # Ends the held read's wait (closing alone does not wake a thread
    # blocked reading the socket).
    c.transport.shutdown(socket.SHUT_RDWR)
    c.close()
    t.join()
    out("held", outcome["a"])


def crowd(path):
    """Many clients, each with held reads from several threads."""
    clients = [session(path)[0] for _ in range(8)]
    got = {}
    lock = threading.Lock()

    def reader(i, c, fid):
        data = c.read(fid, 100, i).decode()
        with lock:
            got[i] = data

    threads = []
    for n, c in enumerate(clients):
        for k in range(3):
            fid = 1 + k
            c.walk(0, fid, "f")
            c.open(fid, OREAD)
            i = 3 * n + k
            threads.append(threading.Thread(target=reader, args=(i, c, fid)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = [i for i in range(24) if got.get(i) != "answer %d" % i]
    out("crowd", "ok" if not bad else "wrong %s" % bad)


def ramfile(path):
    """The ramfile example, reached through the socket it posted."""
    c, _ = session(path)
    c.walk(0, 1, "data")
    c.open(1, ORDWR)
    out("write", c.write(1, b"hello, world", 0))
    out("read", c.read(1, 100, 0).decode())
    out("at 7", c.read(1, 100, 7).decode())
    out("write", c.write(1, b"bye", 0))
    out("read", c.read(1, 100, 0).decode())
    out("at 3", c.read(1, 100, 3).decode() or "<eof>")
    c.clunk(1)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise EOFError("connection closed")
        data += more
    return data


def raw_error(sock, body):
    """Sends one frame around `body`; gives the reply's tag and, for an
    Rerror, its message."""
    sock.sendall((4 + len(body)).to_bytes(4, "little") + body)
    size = int.from_bytes(recv_exact(sock, 4), "little")
    reply = recv_exact(sock, size - 4)
    assert reply[0] == 107, "want Rerror, got type %d" % reply[0]
    n = int.from_bytes(reply[3:5], "little")
    return int.from_bytes(reply[1:3], "little"), reply[5 : 5 + n].decode()


def malformed(path):
    """Bad input on one connection: framed nonsense gets errors and the
    session goes on; a broken frame ends that connection alone."""
    bystander, _ = session(path)
    bystander.walk(0, 1, "f")
    bystander.open(1, ORDWR)
    c, _ = session(path)
    s = c.transport
    le = lambda v, n: v.to_bytes(n, "little")
    # A Twalk claiming two names and giving none.
    out("short walk", *raw_error(s, bytes([110]) + le(5, 2) + le(0, 4) + le(1, 4) + le(2, 2)))
    # A message type no 9P2000 has.
    out("unknown type", *raw_error(s, bytes([99]) + le(6, 2)))
    # A reply, sent to the server.
    out("reply", *raw_error(s, bytes([121]) + le(7, 2)))
    # A read of a fid never attached.
    out("unknown fid", *raw_error(s, bytes([116]) + le(8, 2) + le(42, 4) + le(0, 8) + le(1, 4)))
    out("session", c.stat(0).name)
    # A size field below the smallest message: the server hangs up.
    s.sendall(le(3, 4))
    try:
        closed = s.recv(1) == b""
    except ConnectionResetError:
        closed = True
    out("broken frame", "closed" if closed else "still open")
    out("bystander", bystander.write(1, b"still served", 0))


if __name__ == "__main__":
    scenario, path = sys.argv[1], sys.argv[2]
    globals()[scenario](path)
    out("done")
