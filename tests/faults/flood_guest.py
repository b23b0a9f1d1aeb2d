#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A hostile guest for the flood tests (Tests/SystemTests/FloodSystemTests.swift)
and bench/flood.py: listens on a unix socket where balloond would, answers the
host's sync (0xFF, then the reply) and no other request, then floods the
host with garbage lines, over-long lines, unknown events and frame reports
far outside guest RAM until the host hangs up; then waits for the next host.

usage: flood_guest.py SOCKET
"""
import json
import os
import socket
import sys

path = sys.argv[1]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(4)

event = json.dumps({"event": "NOISE", "data": {"x": 1},
                    "timestamp": {"seconds": 1, "microseconds": 0}}).encode()
frames = json.dumps({"event": "FRAMES_INFLATED", "data": {"seq": 1, "page-size": 4096,
                                                          "ranges": [[1 << 40, 1 << 20]]},
                     "timestamp": {"seconds": 1, "microseconds": 0}}).encode()
block = (b"garbage that is not JSON\n" * 200 + event + b"\n" + frames + b"\n"
         + b"{" + b"x" * (2 << 20) + b"\n")


def sync(conn):
    """Reads lines until the host's sync; answers it as balloond does."""
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
        while b"\n" in data:
            line, data = data.split(b"\n", 1)
            line = line.lstrip(b"\xff")
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if request.get("execute") == "sync":
                reply = {"return": request["arguments"]["id"], "id": request.get("id")}
                conn.sendall(b"\xff" + json.dumps(reply).encode() + b"\n")
                return True


while True:
    conn, _ = server.accept()
    try:
        if sync(conn):
            conn.setblocking(False)
            while True:
                try:
                    conn.recv(65536)  # what the host asks is never answered
                except BlockingIOError:
                    pass
                conn.setblocking(True)
                conn.sendall(block)
                conn.setblocking(False)
    except OSError:
        pass
    conn.close()
