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
"""
import json
import os
import subprocess
import sys

mode = sys.argv[1]


def emit(event):
    os.write(1, (json.dumps(event) + "\n").encode())


if mode == "crash":
    sys.stderr.write("fake: crashing on purpose\n")
    sys.exit(3)

workers = 0
for line in sys.stdin:
    command = json.loads(line)
    name = command["cmd"]
    if name == "hello":
        version = 0 if mode == "old-protocol" else 1
        emit({"ev": "hello", "at": "primary", "protocol": version, "pid": os.getpid(),
              "implementation": {"name": "fake-" + mode, "version": "0"}, "features": ["fork"]})
        emit({"ev": "start", "at": "primary", "pid": os.getpid(), "policy": "rr"})
        if mode == "garbage":
            os.write(1, b"this is not a protocol line\n")
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
        emit({"ev": "ack", "at": "primary", "seq": command["seq"], "result": {"worker": workers}})
        emit({"ev": "fork", "at": "primary", "on": "cluster", "worker": workers})
        continue
    if name == "shutdown":
        sys.exit(0)
    emit({"ev": "ack", "at": "primary", "seq": command["seq"], "error": {"code": "ERR_UNKNOWN_COMMAND"}})
