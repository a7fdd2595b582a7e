#!/usr/bin/env python3
"""A storm of connections that the sidecar resets: keeps CONCURRENCY connects in flight to HOST:PORT, each
sending a line and waiting for the reset (or EOF), until COUNT have ended or SECONDS have passed.
Prints "ended=N reset=N other=N seconds=S rate=R" (rate: ended connections per second).

    refused_storm.py HOST PORT --count 20000 --seconds 10 --concurrency 64
"""
import argparse
import errno
import selectors
import socket
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sel = selectors.DefaultSelector()
    started = time.monotonic()
    deadline = started + args.seconds
    opened = ended = reset = other = 0

    def open_one():
        nonlocal opened
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((args.host, args.port))
        sel.register(s, selectors.EVENT_WRITE, "connecting")
        opened += 1

    def finish(s, was_reset):
        nonlocal ended, reset, other
        sel.unregister(s)
        s.close()
        ended += 1
        if was_reset:
            reset += 1
        else:
            other += 1

    while time.monotonic() < deadline and ended < args.count:
        while opened - ended < args.concurrency and opened < args.count:
            open_one()
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            if key.data == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(s, err == errno.ECONNRESET)
                    continue
                try:
                    s.send(b"ping\n")
                except OSError as e:
                    finish(s, e.errno in (errno.ECONNRESET, errno.EPIPE))
                    continue
                sel.modify(s, selectors.EVENT_READ, "waiting")
            else:
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    finish(s, True)
                    continue
                except OSError:
                    finish(s, False)
                    continue
                if not data:
                    finish(s, False)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    seconds = time.monotonic() - started
    print(f"ended={ended} reset={reset} other={other} seconds={seconds:.2f} rate={ended / seconds:.0f}")


if __name__ == "__main__":
    main()
