"""The idle-connection holder: N connections through a proxy, each carrying one ping and pong, then the
growth of the proxy's memory and pipes while they sit idle."""

import resource
import select
import socket
import time

from . import procstats


def recv_line(sock, deadline):
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply")
        poller = select.poll()  # not select(): thousands of descriptors exceed FD_SETSIZE
        poller.register(sock, select.POLLIN)
        if not poller.poll(left * 1000):
            continue
        chunk = sock.recv(64)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def hold(upstream_port, proxy_port, pid, n, timeout):
    """Opens n connections through the proxy (to our own upstream listener), passes a ping and a pong on
    each, then reads the proxy's memory and pipes; closes everything and returns the figures (or an error)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    upstream.bind(("127.0.0.1", upstream_port))
    upstream.listen(4096)
    deadline = time.monotonic() + timeout
    held = []

    def open_one():
        c = socket.create_connection(("127.0.0.1", proxy_port), timeout=5)
        c.sendall(b"ping\n")
        upstream.settimeout(max(0.1, deadline - time.monotonic()))
        s, _ = upstream.accept()
        if recv_line(s, deadline) != b"ping\n":
            raise ConnectionError("bad ping")
        s.sendall(b"pong\n")
        if recv_line(c, deadline) != b"pong\n":
            raise ConnectionError("bad pong")
        held.append(c)
        held.append(s)

    result = {"connections": 0}
    try:
        # Warm up: a few connections opened and closed before the baseline.
        for _ in range(16):
            open_one()
        for s in held:
            s.close()
        held.clear()
        time.sleep(0.5)
        rss_before = procstats.tree_pss_kib(pid)
        pipes_before = procstats.tree_pipes(pid)
        for _ in range(n):
            open_one()
        time.sleep(0.5)
        rss_after = procstats.tree_pss_kib(pid)
        pipes_after = procstats.tree_pipes(pid)
        result = {
            "connections": len(held) // 2,
            "pss_before_kib": rss_before,
            "pss_after_kib": rss_after,
            "bytes_per_conn": (rss_after - rss_before) * 1024.0 / n,
            "pipes_before": pipes_before,
            "pipes_after": pipes_after,
            "pipes_added": pipes_after - pipes_before,
        }
    except (OSError, TimeoutError, ConnectionError) as e:
        result["error"] = str(e)
    finally:
        for s in held:
            s.close()
        upstream.close()
    return result
