#!/usr/bin/env python3
"""Helpers for bench/compare: process-tree CPU and memory from /proc, an idle-connection holder, parsers
for iperf3 and wrk output, and the final table and chart. Standard library only."""

import argparse
import json
import os
import re
import select
import socket
import subprocess
import sys
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children_of():
    """ppid -> [pid] for every process now."""
    tree = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tree.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError):
            pass
    return tree


def tree_pids(pid):
    tree = children_of()
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(tree.get(p, []))
    return pids


def tree_cpu(pid):
    """CPU seconds (user + system) of pid and its descendants, reaped children included."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # fields[11..14] = utime stime cutime cstime (stat fields 14..17)
            total += sum(int(x) for x in fields[11:15])
        except OSError:
            pass
    return total / CLOCK_TICKS


def tree_pss_kib(pid):
    """Proportional set size of pid and its descendants: resident memory, shared pages divided among the
    processes that share them, so forked proxies (socat) are not counted once per process."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def tree_pipes(pid):
    """Pipe descriptors held by pid and its descendants."""
    count = 0
    for p in tree_pids(pid):
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    if os.readlink(f"/proc/{p}/fd/{fd}").startswith("pipe:"):
                        count += 1
                except OSError:
                    pass
        except OSError:
            pass
    return count


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


def hold(args):
    """Opens N connections through the proxy (to our own upstream listener), passes a ping and a pong on
    each, then reads the proxy's memory and pipes; closes everything and prints one JSON line."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    upstream.bind(("127.0.0.1", args.upstream_port))
    upstream.listen(4096)
    deadline = time.monotonic() + args.timeout
    # Warm up: a few connections opened and closed before the baseline.
    held = []

    def open_one():
        c = socket.create_connection(("127.0.0.1", args.proxy_port), timeout=5)
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
        for _ in range(16):
            open_one()
        for s in held:
            s.close()
        held.clear()
        time.sleep(0.5)
        rss_before = tree_pss_kib(args.pid)
        pipes_before = tree_pipes(args.pid)
        for _ in range(args.n):
            open_one()
        time.sleep(0.5)
        rss_after = tree_pss_kib(args.pid)
        pipes_after = tree_pipes(args.pid)
        result = {
            "connections": len(held) // 2,
            "pss_before_kib": rss_before,
            "pss_after_kib": rss_after,
            "bytes_per_conn": (rss_after - rss_before) * 1024.0 / args.n,
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
    print(json.dumps(result))


def parse_iperf(path):
    with open(path) as f:
        data = json.load(f)
    if "error" in data:
        return {"error": data["error"]}
    end = data["end"]
    return {"bps": end["sum_received"]["bits_per_second"], "bytes": end["sum_received"]["bytes"]}


def to_us(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


def parse_wrk(path):
    with open(path) as f:
        text = f.read()
    out = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)", text, re.M)
        if m:
            out[f"p{q}_us"] = to_us(m.group(1))
    m = re.search(r"Socket errors: (.*)", text)
    if m:
        out["socket_errors"] = m.group(1).strip()
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    if "rps" not in out:
        out["error"] = "no Requests/sec in wrk output"
    return out


def cmd_parse(args):
    parser = parse_iperf if args.kind == "iperf" else parse_wrk
    try:
        print(json.dumps(parser(args.path)))
    except (OSError, ValueError, KeyError) as e:
        print(json.dumps({"error": f"{args.kind}: {e}"}))


# --------------------------------------------------------------------------------------------------
# Report: results.jsonl has one line per measurement {proxy, test, direct: {...}, proxied: {...}, ...}.

ORDER = ["podproxy-splice", "podproxy-buffered", "podproxy-splice-2t", "haproxy", "nginx", "socat"]
PEERS = ["haproxy", "nginx", "socat"]


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def report(args):
    rows = {}
    with open(args.results) as f:
        for line in f:
            r = json.loads(line)
            rows.setdefault(r["proxy"], {})[r["test"]] = r
    proxies = [p for p in ORDER if p in rows]

    def ratio(proxy, test, key):
        r = rows.get(proxy, {}).get(test)
        if not r or "error" in r.get("proxied", {}) or "error" in r.get("direct", {}):
            return None
        d, p = r["direct"].get(key), r["proxied"].get(key)
        return p / d if d and p is not None else None

    def value(proxy, test, key, side="proxied"):
        r = rows.get(proxy, {}).get(test)
        return None if not r else r.get(side, {}).get(key)

    metrics = {}
    for p in proxies:
        gb = value(p, "iperf1", "bytes")
        cpu = value(p, "iperf1", "proxy_cpu_s")
        metrics[p] = {
            "tput1": ratio(p, "iperf1", "bps"),
            "tput4": ratio(p, "iperf4", "bps"),
            "cpu_per_gb": cpu / (gb / 1e9) if cpu is not None and gb else None,
            "conn_rate": ratio(p, "wrk_close", "rps"),
            "ka_rate": ratio(p, "wrk_keepalive", "rps"),
            "ka_p99": ratio(p, "wrk_keepalive", "p99_us"),
            "ka_p99_us": value(p, "wrk_keepalive", "p99_us"),
            "idle_b": value(p, "idle", "bytes_per_conn"),
            "idle_pipes": value(p, "idle", "pipes_added"),
        }
    lines = []
    lines.append("Ratio of each proxy to the direct path measured right before it (higher is better, except CPU and p99):")
    lines.append("")
    header = "| proxy | 1-stream tput | 4-stream tput | proxy CPU-s/GB | short conn/s | keep-alive req/s | keep-alive p99 (x direct) | p99 us | idle B/conn (PSS) | pipes held idle |"
    lines.append(header)
    lines.append("|" + "---|" * (header.count("|") - 1))
    for p in proxies:
        m = metrics[p]
        idle_pipes = m["idle_pipes"]
        lines.append(f"| {p} | {fmt(m['tput1'])} | {fmt(m['tput4'])} | {fmt(m['cpu_per_gb'])} | {fmt(m['conn_rate'])} | "
                     f"{fmt(m['ka_rate'])} | {fmt(m['ka_p99'])} | {fmt(m['ka_p99_us'], 0)} | {fmt(m['idle_b'], 0)} | "
                     f"{'-' if idle_pipes is None else idle_pipes} |")
    lines.append("")
    lines.append("podproxy against each peer (podproxy figure / peer figure; CPU and p99: lower is better):")
    lines.append("")
    header = "| podproxy relay | peer | 1-stream tput | 4-stream tput | CPU-s/GB | short conn/s | keep-alive req/s | keep-alive p99 | idle B/conn |"
    lines.append(header)
    lines.append("|" + "---|" * (header.count("|") - 1))

    def div(a, b):
        return a / b if a is not None and b else None

    for mine in ("podproxy-splice", "podproxy-buffered", "podproxy-splice-2t"):
        if mine not in metrics:
            continue
        for peer in PEERS:
            if peer not in metrics:
                continue
            a, b = metrics[mine], metrics[peer]
            lines.append(f"| {mine} | {peer} | {fmt(div(a['tput1'], b['tput1']))} | {fmt(div(a['tput4'], b['tput4']))} | "
                         f"{fmt(div(a['cpu_per_gb'], b['cpu_per_gb']))} | {fmt(div(a['conn_rate'], b['conn_rate']))} | "
                         f"{fmt(div(a['ka_rate'], b['ka_rate']))} | {fmt(div(a['ka_p99'], b['ka_p99']))} | "
                         f"{fmt(div(a['idle_b'], b['idle_b']))} |")
    errors = []
    for p in proxies:
        for test, r in rows[p].items():
            for side in ("direct", "proxied"):
                if isinstance(r.get(side), dict) and "error" in r[side]:
                    errors.append(f"{p} {test} {side}: {r[side]['error']}")
                if isinstance(r.get(side), dict) and r[side].get("socket_errors"):
                    errors.append(f"{p} {test} {side}: wrk socket errors {r[side]['socket_errors']}")
    if errors:
        lines.append("")
        lines.append("Failed or suspect measurements (reported as '-' above):")
        lines.extend(f"- {e}" for e in errors)
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "compare.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "compare.json"), "w") as f:
        json.dump(metrics, f, indent=1)

    # Chart: ratio to direct, per proxy, for throughput (1 and 4 streams) and connection rates.
    data = os.path.join(args.out, "compare.dat")
    with open(data, "w") as f:
        f.write("# proxy tput1 tput4 conn_rate ka_rate\n")
        for p in proxies:
            m = metrics[p]
            f.write(f"{p} " + " ".join("0" if m[k] is None else f"{m[k]:.3f}"
                                       for k in ("tput1", "tput4", "conn_rate", "ka_rate")) + "\n")
    script = f"""
set terminal pngcairo size 1000,520 noenhanced font ",10"
set output '{os.path.join(args.out, "compare.png")}'
set title 'Loopback, one run: each proxy as a fraction of the direct path measured right before it'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set ylabel 'ratio to direct (1.0 = no proxy)'
set grid ytics
set key outside right top
set xtics rotate by -20
plot '{data}' using 2:xtic(1) title 'iperf3 1 stream', '' using 3 title 'iperf3 4 streams', \\
     '' using 4 title 'new connections/s', '' using 5 title 'keep-alive req/s'
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=False)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("cpu", "pss", "pipes"):
        p = sub.add_parser(name)
        p.add_argument("pid", type=int)
    p = sub.add_parser("hold")
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--proxy-port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("parse")
    p.add_argument("kind", choices=["iperf", "wrk"])
    p.add_argument("path")
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("out")
    args = ap.parse_args()
    if args.cmd == "cpu":
        print(f"{tree_cpu(args.pid):.3f}")
    elif args.cmd == "pss":
        print(tree_pss_kib(args.pid))
    elif args.cmd == "pipes":
        print(tree_pipes(args.pid))
    elif args.cmd == "hold":
        hold(args)
    elif args.cmd == "parse":
        cmd_parse(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
