#!/usr/bin/env python3
"""A fake implementation for the runner's own tests: speaks (or breaks) the fixture protocol on purpose.

Usage: fake.py MODE
  good          answers like a tiny cluster: fork acks, fork/online events, exit on shutdown
  crash         dies before the handshake
  hang          completes the handshake, then never answers anything (not even shutdown)
  garbage       completes the handshake, then writes a line that is not JSON
  flood         completes the handshake, then writes valid events without end
  orphan        'forks' a detached process that outlives the primary, and reports its pid
  old-protocol  answers the handshake with another protocol version
  exits         exits with code 5 when asked to fork
  bigevents     on 'send', it and three child processes write the message back at once as framed events
  unframed      writes an event line longer than 4096 bytes without framing it
  badpart       writes a part line whose data is not base64
  cutpart       writes the first part of a framed event, then exits
  badhttp       'listen' kind http: a server that answers requests with a malformed HTTP response
  flaky MARKER  crashes before the handshake the first time (creating MARKER), then answers like good
  nobench       like good, and each fork also reports a worker start event (the primary's pid): a fixture
                without the benchmark commands (PROTOCOL.md §3.3)
"""
import base64
import socket
import threading
import json
import os
import subprocess
import sys

mode = sys.argv[1]


def emit(event):
    line = json.dumps(event, ensure_ascii=False).encode()
    if len(line) + 1 <= 4096:
        os.write(1, line + b"\n")
        return
    # Protocol §1.1: pieces of at most 3000 bytes, base64, one write(2) each.
    for start in range(0, len(line), 3000):
        part = {"ev": "part", "pid": os.getpid(), "data": base64.b64encode(line[start:start + 3000]).decode()}
        if start + 3000 >= len(line):
            part["last"] = True
        os.write(1, (json.dumps(part) + "\n").encode())


def serve_bad_http(server):
    while True:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: banana\r\n\r\n{}")
        conn.close()


if mode == "emit-worker":
    # A child of bigevents: writes the message read from stdin back as worker N's event.
    emit({"ev": "message", "at": "worker", "worker": int(sys.argv[2]), "message": json.loads(sys.stdin.read())})
    sys.exit(0)

if mode == "flaky":
    # Crashes the first time it runs with this marker file, then behaves (the marker is argv[2]).
    if not os.path.exists(sys.argv[2]):
        open(sys.argv[2], "w").close()
        sys.exit(3)
    mode = "good"

if mode == "crash":
    sys.stderr.write("fake: crashing on purpose\n")
    sys.exit(3)

workers = 0
for line in sys.stdin:
    command = json.loads(line)
    name = command["cmd"]
    if name == "hello":
        version = 0 if mode == "old-protocol" else 2
        emit({"ev": "hello", "at": "primary", "protocol": version, "pid": os.getpid(),
              "implementation": {"name": "fake-" + mode, "version": "0"}, "features": ["fork"]})
        emit({"ev": "start", "at": "primary", "pid": os.getpid(), "policy": "rr"})
        if mode == "garbage":
            os.write(1, b"this is not a protocol line\n")
        if mode == "unframed":
            os.write(1, (json.dumps({"ev": "noise", "at": "primary", "text": "x" * 5000}) + "\n").encode())
        if mode == "badpart":
            os.write(1, b'{"ev":"part","pid":1,"data":"%%%"}\n')
        if mode == "cutpart":
            os.write(1, b'{"ev":"part","pid":1,"data":"eyJldiI6"}\n')
            sys.exit(0)
        if mode == "flood":
            while True:
                emit({"ev": "noise", "at": "primary", "n": 1})
        if mode == "hang":
            for _ in sys.stdin:
                pass
            # stdin closed: keep hanging, as a stuck implementation would
            import time
            while True:
                time.sleep(60)
        continue
    if name == "fork":
        if mode == "exits":
            sys.exit(5)
        workers += 1
        if mode == "orphan":
            child = subprocess.Popen(["sleep", "60"], start_new_session=True)
            emit({"ev": "start", "at": "worker", "worker": workers, "pid": child.pid})
        if mode == "nobench":
            emit({"ev": "start", "at": "worker", "worker": workers, "pid": os.getpid()})
        emit({"ev": "ack", "at": "primary", "seq": command["seq"], "result": {"worker": workers}})
        emit({"ev": "fork", "at": "primary", "on": "cluster", "worker": workers})
        continue
    if name == "shutdown":
        sys.exit(0)
    if name == "send" and mode == "bigevents":
        message = command["messages"][0]
        # Three other processes and this one write the long event at the same time, on the shared stdout.
        children = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "emit-worker", str(k)], stdin=subprocess.PIPE)
                    for k in (1, 2, 3)]
        for child in children:
            child.stdin.write(json.dumps(message).encode())
            child.stdin.close()
        emit({"ev": "message", "at": "primary", "on": "cluster", "worker": 1, "message": message})
        for child in children:
            child.wait()
        emit({"ev": "ack", "at": "primary", "seq": command["seq"], "result": {"returned": [True]}})
        continue
    if name == "listen" and mode == "badhttp":
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        threading.Thread(target=serve_bad_http, args=(server,), daemon=True).start()
        emit({"ev": "ack", "at": "primary", "seq": command["seq"], "result": {}})
        emit({"ev": "listening", "at": "primary", "server": command["server"], "address": "127.0.0.1",
              "family": "IPv4", "port": server.getsockname()[1]})
        continue
    emit({"ev": "ack", "at": "primary", "seq": command["seq"], "error": {"code": "ERR_UNKNOWN_COMMAND"}})
