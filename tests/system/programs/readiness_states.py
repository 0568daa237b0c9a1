"""Walks TCP sockets through their states and prints, for each, what select, poll,
epoll and selectors report (JSON). It uses plain ``socket`` calls only: run as it is
(kernel TCP) or under ``toad exec`` (offloaded), the two outputs must agree.

    python3 readiness_states.py HOST PORT
"""
import json
import select
import selectors
import socket
import struct
import sys

HOST, PORT = sys.argv[1], int(sys.argv[2])
POLL_BITS = ("POLLIN", "POLLOUT", "POLLERR", "POLLHUP", "POLLRDHUP")
EPOLL_BITS = ("EPOLLIN", "EPOLLOUT", "EPOLLERR", "EPOLLHUP", "EPOLLRDHUP")
states = {}


def names(mask, bits, module):
    return [b for b in bits if mask & getattr(module, b)]


def look(sock):
    """What each API reports for ``sock`` now (no wait)."""
    fd = sock.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLOUT | select.POLLRDHUP)
    got = poller.poll(0)
    ep = select.epoll()
    ep.register(fd, select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP)
    egot = ep.poll(0)
    ep.close()
    r, w, x = select.select([sock], [sock], [sock], 0)
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        events = sel.select(0)
    return {"poll": names(got[0][1] if got else 0, POLL_BITS, select),
            "epoll": names(egot[0][1] if egot else 0, EPOLL_BITS, select),
            "select": [bool(r), bool(w), bool(x)],
            "selectors": [events[0][1] & selectors.EVENT_READ != 0,
                          events[0][1] & selectors.EVENT_WRITE != 0] if events else [False, False]}


def wait(sock, read=False, write=False):
    """Block (bounded) until the kernel or toad says ``sock`` is ready that way."""
    r, w, _ = select.select([sock] if read else [], [sock] if write else [], [], 20)
    assert r or w, "nothing became ready in 20 s"


def record(name, sock):
    states[name] = look(sock)


fresh = socket.socket()
states["fresh"] = look(fresh)
fresh.close()

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((HOST, PORT))
listener.listen(8)
listener.setblocking(False)
record("listening", listener)

client = socket.create_connection((HOST, PORT), timeout=20)
wait(listener, read=True)
record("listening, a connection to accept", listener)
server, _ = listener.accept()
record("listening, accepted", listener)
client.setblocking(False)
server.setblocking(False)
wait(client, write=True)
record("connected", client)

client.send(b"x" * 1000)
wait(server, read=True)
record("data to read", server)
assert len(server.recv(65536)) == 1000
record("data read", server)
try:
    server.recv(10)
except BlockingIOError:
    pass
record("read again (EAGAIN)", server)

sent = 0
try:
    while True:
        sent += client.send(b"y" * 65536)
except BlockingIOError:
    pass
record("send buffer full", client)
got = 0
while got < sent:
    wait(server, read=True)
    try:
        got += len(server.recv(1 << 20))
    except BlockingIOError:
        pass
wait(client, write=True)
record("send buffer drained", client)

client.shutdown(socket.SHUT_WR)
wait(server, read=True)
record("peer's FIN", server)
assert server.recv(10) == b""
record("peer's FIN, EOF read", server)
record("after our SHUT_WR", client)
server.shutdown(socket.SHUT_WR)
wait(client, read=True)
record("both ends shut", client)
client.close()
server.close()

c2 = socket.create_connection((HOST, PORT), timeout=20)
wait(listener, read=True)
s2, _ = listener.accept()
s2.shutdown(socket.SHUT_RD)
record("our SHUT_RD", s2)
s2.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s2.close()
wait(c2, read=True)
record("reset by the peer", c2)
states["reset: SO_ERROR"] = c2.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
record("reset, SO_ERROR read", c2)
c2.close()

pending = socket.socket()
pending.setblocking(False)
states["non-blocking connect: connect_ex"] = pending.connect_ex((HOST, PORT)) in (0, 115)
wait(pending, write=True)
record("non-blocking connect, done", pending)
states["non-blocking connect: SO_ERROR"] = pending.getsockopt(socket.SOL_SOCKET,
                                                              socket.SO_ERROR)
wait(listener, read=True)
s3, _ = listener.accept()
s3.close()
pending.close()

listener.close()
refused = socket.socket()
refused.setblocking(False)
code = refused.connect_ex((HOST, PORT))
states["refused: connect_ex"] = code in (115, 111)
wait(refused, write=True)
record("connection refused", refused)
states["refused: SO_ERROR"] = refused.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
refused.close()
print(json.dumps(states))
