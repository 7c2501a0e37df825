#!/usr/bin/env python3
"""How far the Event Service's intake is from what any Python server pays: server CPU per publish request.

    python3 bench/floor.py              # 3 rounds, medians (under a minute)
    python3 bench/floor.py --rounds 5 --requests 50000

Each round runs, in its own process on 127.0.0.1, both servers one after the
other (order alternating between rounds), and drives each with the same
client: one connection, the same pre-built Pyro5 frames (a marshalled
``publish("FLOOR.TEST", (seq, time, "SUN", 123.45))``, as the Publisher sends
them), each sent when the answer to the last one has come.

  es       bin/es -N: the real intake (no subscriber, so no delivery)
  minimal  the least a Python server can do per request: one epoll loop, recv,
           unpack the header, marshal.loads the call, send a canned result frame

Figures: the server process's CPU (user + system, /proc) per request, and the
ratio es / minimal per round, median over rounds. What remains above the
floor is the ES's Python per request (its checks, matching, queueing,
bookkeeping); the floor itself is mostly system calls and the kernel's
loopback TCP, which Redis pays as well.
"""
from __future__ import annotations

import argparse
import marshal
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 60.0  # seconds any one measurement may take

if __name__ == "__main__" and "--no-bootstrap" not in sys.argv:
    sys.path.insert(0, str(ROOT / "dev"))
    import bootstrap

    bootstrap.ensure_venv()

from Pyro5 import protocol, serializers  # noqa: E402

MARSHAL = serializers.serializers["marshal"]
SERPENT = serializers.serializers["serpent"]

#: the floor: a complete Pyro5 responder for one kind of request, and nothing more (runs as python -c)
MINIMAL_SERVER = r"""
import marshal, select, socket, struct
header = struct.Struct("!4sHBBHHII16sHH")  # Pyro5's
RESULT = 3  # Pyro5's MSG_RESULT
body = marshal.dumps(0)
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
poller = select.epoll()
poller.register(listener.fileno(), select.EPOLLIN)
clients = {}
while True:
    for fd, _ in poller.poll():
        if fd == listener.fileno():
            sock, _ = listener.accept()
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            clients[sock.fileno()] = (sock, bytearray())
            poller.register(sock.fileno(), select.EPOLLIN)
            continue
        sock, inbox = clients[fd]
        data = sock.recv(65536)
        if not data:
            poller.unregister(fd)
            del clients[fd]
            sock.close()
            continue
        inbox += data
        while len(inbox) >= header.size:
            _, version, _, serializer, _, seq, data_size, annotations_size, _, _, magic = header.unpack_from(inbox)
            size = header.size + data_size + annotations_size
            if len(inbox) < size:
                break
            marshal.loads(bytes(inbox[header.size:size]))
            del inbox[:size]
            sock.send(header.pack(b"PYRO", version, RESULT, serializer, 0, seq, len(body), 0, bytes(16), 0, magic)
                      + body)
"""


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request(seq: int, object_id: str) -> bytes:
    payload = marshal.dumps((object_id, "publish", ("FLOOR.TEST", (seq, time.time(), "SUN", 123.45)), {}))
    return protocol.SendingMessage(protocol.MSG_INVOKE, 0, seq & 0xFFFF, MARSHAL.serializer_id, payload).data


def read_message(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < protocol._header_size:
        data += _recv(sock)
    message = protocol.ReceivingMessage(data[:protocol._header_size])
    while len(data) < protocol._header_size + message.data_size + message.annotations_size:
        data += _recv(sock)
    return data


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection")
    return chunk


def drive(port: int, object_id: str, server_pid: int, requests: int, handshake: bool) -> tuple[float, float]:
    """Send ``requests`` publishes one at a time; (requests/s, server CPU µs per request)."""
    with socket.create_connection(("127.0.0.1", port), timeout=LIMIT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if handshake:
            hello = SERPENT.dumps({"handshake": "hello", "object": object_id})
            sock.sendall(protocol.SendingMessage(protocol.MSG_CONNECT, 0, 0, SERPENT.serializer_id, hello).data)
            read_message(sock)
        frames = [request(seq, object_id) for seq in range(requests + 1000)]
        for frame in frames[:1000]:  # warm-up
            sock.sendall(frame)
            read_message(sock)
        cpu, start = process_cpu(server_pid), time.monotonic()
        for frame in frames[1000:]:
            sock.sendall(frame)
            read_message(sock)
        elapsed, used = time.monotonic() - start, process_cpu(server_pid) - cpu
    return requests / elapsed, 1e6 * used / requests


def measure(which: str, requests: int) -> tuple[float, float]:
    if which == "minimal":
        command = [sys.executable, "-c", MINIMAL_SERVER]
    else:
        command = [sys.executable, str(ROOT / "bin" / "es"), "-N", "-n", "127.0.0.1"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        if which == "minimal":
            port, object_id = int(server.stdout.readline()), "floor"
        else:
            deadline = time.monotonic() + LIMIT
            for line in server.stdout:
                if "Event Service URI:" in line:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("es did not print its URI")
            else:
                raise RuntimeError("es ended before printing its URI")
            uri = line.split("Event Service URI:", 1)[1].strip()
            object_id, port = uri.split(":", 1)[1].split("@")[0], int(uri.rsplit(":", 1)[1])
        return drive(port, object_id, server.pid, requests, handshake=which == "es")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20000, help="measured requests per server and round")
    parser.add_argument("--no-bootstrap", action="store_true", help="run in this interpreter (needs Pyro5, regex)")
    options = parser.parse_args(argv)
    figures: dict[str, list[tuple[float, float]]] = {"es": [], "minimal": []}
    ratios = []
    for number in range(options.rounds):
        order = ["es", "minimal"] if number % 2 == 0 else ["minimal", "es"]
        for which in order:
            figures[which].append(measure(which, options.requests))
            rate, cpu = figures[which][-1]
            print(f"[round {number + 1}] {which:8} {rate:9,.0f} requests/s  server CPU {cpu:6.1f} µs/request",
                  file=sys.stderr)
        ratios.append(figures["es"][-1][1] / figures["minimal"][-1][1])
    print(f"server CPU per publish request, median of {options.rounds} rounds:")
    for which, values in figures.items():
        print(f"  {which:8} {statistics.median(cpu for _, cpu in values):6.1f} µs   "
              f"({statistics.median(rate for rate, _ in values):,.0f} requests/s)")
    print(f"  es / minimal: {statistics.median(ratios):.2f} (per round: {' '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
