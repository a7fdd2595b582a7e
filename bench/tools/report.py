"""The report of bench/compare: results.jsonl (one line per measurement: {round, proxy, test, direct: {...},
proxied: {...}}, or a head-to-head {round, proxy, peer, test, mine_runs, peer_runs}) into the tables of
compare.md, compare.json and the chart compare.png. Which proxies, which pairs and which goals come from
the setup (compare_setup.json)."""

import json
import os
import re
import subprocess
import sys

from . import setup as setup_mod

# Per round, each a ratio to the direct run except cpu_per_gb (CPU-s per GB) and ka_p99_us (microseconds).
METRICS = ("tput1", "tput4", "cpu_per_gb", "conn_rate", "ka_rate", "ka_p99", "ka_p99_us")
# During the 4-stream runs: the proxy's CPU in fractions of one CPU, iperf3's client and server in percent.
BUSY = ("busy4", "client4", "server4")
# The podproxy/peer table's columns.
VERSUS = ("tput1", "tput4", "cpu_per_gb", "conn_rate", "ka_rate", "ka_p99")


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def median(values):
    values = sorted(values)
    n = len(values)
    if n == 0:
        return None
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def summary(values):
    """Median, lowest, highest and count of the values that were measured (None: failed or missing)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt_summary(s, digits=2):
    if s["median"] is None:
        return "-"
    if s["n"] == 1 or fmt(s["min"], digits) == fmt(s["max"], digits):
        return fmt(s["median"], digits)
    return f"{fmt(s['median'], digits)} ({fmt(s['min'], digits)}-{fmt(s['max'], digits)})"


def div(a, b):
    return a / b if a is not None and b else None


def machine_cpus(out):
    """The CPU count bench/compare wrote to machine.txt next to the results, if it is there."""
    try:
        with open(os.path.join(out, "machine.txt")) as f:
            m = re.search(r"^nproc: (\d+)$", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def two_threads_note(m, base, cpus, bottleneck_busy):
    """What the 2-thread goal can show in this run: a second thread raises the 4-stream figure only where the
    one thread bounds it. Reads the 1-thread proxy's CPU during the 4-stream runs and iperf3's own."""
    busy = m["busy4"]
    if busy["median"] is None:
        return None
    bound = busy["median"] >= bottleneck_busy
    text = (f"2 threads can raise the 4-stream figure only where one thread is what bounds it. During the "
            f"4-stream runs the 1-thread {base} was busy {fmt_summary(busy)} of one CPU")
    if m["client4"]["median"] is not None and m["server4"]["median"] is not None:
        text += (f"; iperf3's client used {fmt_summary(m['client4'], 0)} and its server {fmt_summary(m['server4'], 0)} "
                 "percent of one CPU (each is single-threaded)")
    if cpus:
        text += f"; the machine has {cpus} CPUs"
    text += (". One thread was the bottleneck: the goal is read as measured." if bound else
             f". One thread was not the bottleneck (below {bottleneck_busy} of a CPU): the 2t/1t ratio shows the "
             "noise of the run, not the second thread.")
    return {"busy_median": busy["median"], "busy_min": busy["min"], "busy_max": busy["max"],
            "client_cpu_pct": m["client4"]["median"], "server_cpu_pct": m["server4"]["median"],
            "cpus": cpus, "proxy_bound": bound, "text": text}


class Results:
    """results.jsonl indexed by proxy, test and round, with the per-round figures the tables are made of."""

    def __init__(self, path):
        self.runs = {}  # proxy -> test -> round -> record
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                self.runs.setdefault(r["proxy"], {}).setdefault(r["test"], {})[r.get("round", 1)] = r
        self.rounds = sorted({n for tests in self.runs.values() for by_round in tests.values() for n in by_round})

    def record(self, proxy, test, rnd):
        return self.runs.get(proxy, {}).get(test, {}).get(rnd)

    def ratio(self, proxy, test, key, rnd):
        r = self.record(proxy, test, rnd)
        if not r or "error" in r.get("proxied", {}) or "error" in r.get("direct", {}):
            return None
        d, p = r["direct"].get(key), r["proxied"].get(key)
        return p / d if d and p is not None else None

    def value(self, proxy, test, key, rnd, side="proxied"):
        r = self.record(proxy, test, rnd)
        return None if not r or "error" in r.get(side, {}) else r.get(side, {}).get(key)

    def busy(self, proxy, test, rnd):
        """The proxy's CPU seconds over the run's seconds: how much of one CPU it used (iperf3's seconds, or
        for results from before they were kept, its bytes over its rate)."""
        cpu, seconds = self.value(proxy, test, "proxy_cpu_s", rnd), self.value(proxy, test, "seconds", rnd)
        if seconds is None:
            nbytes, bps = self.value(proxy, test, "bytes", rnd), self.value(proxy, test, "bps", rnd)
            seconds = nbytes * 8 / bps if nbytes is not None and bps else None
        return cpu / seconds if cpu is not None and seconds else None

    def per_round(self, proxy, rnd):
        gb = self.value(proxy, "iperf1", "bytes", rnd)
        cpu = self.value(proxy, "iperf1", "proxy_cpu_s", rnd)
        return {
            "busy4": self.busy(proxy, "iperf4", rnd),
            "client4": self.value(proxy, "iperf4", "client_cpu_pct", rnd),
            "server4": self.value(proxy, "iperf4", "server_cpu_pct", rnd),
            "tput1": self.ratio(proxy, "iperf1", "bps", rnd),
            "tput4": self.ratio(proxy, "iperf4", "bps", rnd),
            "cpu_per_gb": cpu / (gb / 1e9) if cpu is not None and gb else None,
            "conn_rate": self.ratio(proxy, "wrk_close", "rps", rnd),
            "ka_rate": self.ratio(proxy, "wrk_keepalive", "rps", rnd),
            "ka_p99": self.ratio(proxy, "wrk_keepalive", "p99_us", rnd),
            "ka_p99_us": self.value(proxy, "wrk_keepalive", "p99_us", rnd),
        }

    def head_to_head(self, mine, test, key, rnd):
        """One round's head-to-head ratio: podproxy's two runs summed over the peer's two."""
        r = self.record(mine, test, rnd)
        if not r:
            return None
        runs_mine, runs_peer = r.get("mine_runs", []), r.get("peer_runs", [])
        if not runs_mine or not runs_peer or any("error" in x or x.get(key) is None for x in runs_mine + runs_peer):
            return None
        return div(sum(x[key] for x in runs_mine), sum(x[key] for x in runs_peer))

    def errors(self, proxies):
        """Every failed or suspect measurement, as a line naming proxy, test, round and side."""
        many = len(self.rounds) > 1
        found = []
        for p in proxies:
            for test, by_rnd in self.runs[p].items():
                for n, r in sorted(by_rnd.items()):
                    where = f"{p} {test}" + (f" round {n}" if many else "")
                    for side in ("direct", "proxied"):
                        if isinstance(r.get(side), dict) and "error" in r[side]:
                            found.append(f"{where} {side}: {r[side]['error']}")
                        if isinstance(r.get(side), dict) and r[side].get("socket_errors"):
                            found.append(f"{where} {side}: wrk socket errors {r[side]['socket_errors']}")
                    for side in ("mine_runs", "peer_runs"):
                        for i, run in enumerate(r.get(side, [])):
                            who = f"{p if side == 'mine_runs' else r.get('peer')} run {i + 1}"
                            if "error" in run:
                                found.append(f"{where} {who}: {run['error']}")
                            if run.get("socket_errors"):
                                found.append(f"{where} {who}: wrk socket errors {run['socket_errors']}")
        return found


def read_goals(setup, res, by_round, metrics):
    """The goals table's rows: (title, figure shown, met by the median, rounds met, rounds measured), and
    what the head-to-head goals and the 2-thread note add to compare.json."""
    spec = setup.get("goals", {})
    rounds = res.rounds
    rows, h2h, note = [], {}, None
    mine, peer = spec.get("mine"), spec.get("peer")
    if mine in metrics and peer in metrics:
        for g in spec.get("per_round", []):
            per = [div(by_round[mine][n][g["metric"]], by_round[peer][n][g["metric"]]) for n in rounds]
            rows.append(goal_row(g, per))
        for g in spec.get("head_to_head", []):
            if not any(res.record(mine, g["test"], n) for n in rounds):
                continue  # results from before the head-to-head runs existed
            per = [res.head_to_head(mine, g["test"], g["figure"], n) for n in rounds]
            h2h[f"{g['test']}:{g['figure']}"] = summary(per)
            rows.append(goal_row(g, per))
        idle = spec.get("idle")
        if idle:
            m = metrics[mine]
            ok = (m["idle_b"] is not None and m["idle_b"] <= idle["max_bytes"] and m["idle_pipes"] is not None
                  and m["idle_pipes"] <= idle["max_pipes"])
            shown = f"{fmt(m['idle_b'], 0)} B, {'-' if m['idle_pipes'] is None else m['idle_pipes']} pipes"
            rows.append((idle["title"], shown, ok, int(ok), 1))
    threads = spec.get("threads")
    if threads and threads["proxy"] in metrics and threads["base"] in metrics:
        metric = threads["metric"]
        per = [div(by_round[threads["proxy"]][n][metric], by_round[threads["base"]][n][metric]) for n in rounds]
        rows.append(goal_row(threads, per))
        note = two_threads_note(metrics[threads["base"]], threads["base"], machine_cpus(res.out),
                                threads.get("bottleneck_busy", 0.9))
    return rows, h2h, note


def goal_row(goal, per_round):
    s = summary(per_round)
    met = sum(1 for r in per_round if setup_mod.passes(goal, r))
    return (goal["title"], fmt_summary(s), setup_mod.passes(goal, s["median"]), met, s["n"])


def report(results_path, out, setup):
    res = Results(results_path)
    res.out = out
    rounds = res.rounds
    proxies = [p for p in setup_mod.names(setup) if p in res.runs]
    by_round = {p: {n: res.per_round(p, n) for n in rounds} for p in proxies}
    metrics = {}
    for p in proxies:
        idle = next((res.record(p, "idle", n) for n in rounds if res.record(p, "idle", n)), None)
        idle = idle.get("proxied", {}) if idle else {}
        metrics[p] = {k: summary([by_round[p][n][k] for n in rounds]) for k in METRICS + BUSY}
        metrics[p]["idle_b"] = idle.get("bytes_per_conn")
        metrics[p]["idle_pipes"] = idle.get("pipes_added")
        metrics[p]["rounds"] = [dict(by_round[p][n], round=n) for n in rounds]

    lines = []
    many = len(rounds) > 1
    spread = f" Median of {len(rounds)} rounds, lowest-highest in brackets." if many else ""
    lines.append("Ratio of each proxy to the direct path measured right before it (higher is better, except CPU and "
                 f"p99).{spread}")
    lines.append("")
    header = ("| proxy | 1-stream tput | 4-stream tput | proxy CPU-s/GB | short conn/s | keep-alive req/s | "
              "keep-alive p99 (x direct) | p99 us | idle B/conn (PSS) | pipes held idle |")
    lines.append(header)
    lines.append("|" + "---|" * (header.count("|") - 1))
    for p in proxies:
        m = metrics[p]
        idle_pipes = m["idle_pipes"]
        cells = [fmt_summary(m[k], 0 if k == "ka_p99_us" else 2) for k in METRICS]
        lines.append(f"| {p} | " + " | ".join(cells) + f" | {fmt(m['idle_b'], 0)} | "
                     f"{'-' if idle_pipes is None else idle_pipes} |")
    lines.append("")
    lines.append("podproxy against each peer (podproxy figure / peer figure, taken in the same round; CPU and p99: "
                 "lower is better):")
    lines.append("")
    header = ("| podproxy relay | peer | 1-stream tput | 4-stream tput | CPU-s/GB | short conn/s | keep-alive req/s | "
              "keep-alive p99 | idle B/conn |")
    lines.append(header)
    lines.append("|" + "---|" * (header.count("|") - 1))
    pairs = {}
    for mine in setup_mod.podproxy_builds(setup):
        if mine not in metrics:
            continue
        for peer in setup_mod.peers(setup):
            if peer not in metrics:
                continue
            vs = {k: summary([div(by_round[mine][n][k], by_round[peer][n][k]) for n in rounds]) for k in VERSUS}
            pairs[f"{mine}/{peer}"] = vs
            cells = [fmt_summary(vs[k]) for k in VERSUS]
            lines.append(f"| {mine} | {peer} | " + " | ".join(cells) +
                         f" | {fmt(div(metrics[mine]['idle_b'], metrics[peer]['idle_b']))} |")

    goals, head_to_head_goals, threads_note = read_goals(setup, res, by_round, metrics)
    if goals:
        heading = setup["goals"].get("heading", "Goals")
        column = setup["goals"].get("column", "ratio")
        lines.append("")
        lines.append(f"{heading} (median of the per-round ratios decides):")
        lines.append("")
        lines.append(f"| goal | {column} | met | rounds met |")
        lines.append("|---|---|---|---|")
        for title, shown, ok, met, n in goals:
            lines.append(f"| {title} | {shown} | {'yes' if ok else 'no'} | {met} of {n} |")
        if threads_note:
            lines.append("")
            lines.append(threads_note["text"])

    errors = res.errors(proxies)
    if errors:
        lines.append("")
        lines.append("Failed or suspect measurements (left out above):")
        lines.extend(f"- {e}" for e in errors)
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out, "compare.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "compare.json"), "w") as f:
        json.dump({"rounds": len(rounds), "proxies": metrics, "podproxy_vs_peer": pairs,
                   "head_to_head": head_to_head_goals,
                   "one_thread_4_streams": {k: v for k, v in (threads_note or {}).items() if k != "text"}},
                  f, indent=1)
    chart(out, proxies, metrics, len(rounds))


def chart(out, proxies, metrics, rounds):
    """compare.png: median ratio to direct per proxy, with the rounds' range as error bars, for throughput
    (1 and 4 streams) and request rates."""
    data = os.path.join(out, "compare.dat")
    with open(data, "w") as f:
        f.write("# proxy, then median, lowest and highest of: tput1 tput4 conn_rate ka_rate\n")
        for p in proxies:
            cols = []
            for k in ("tput1", "tput4", "conn_rate", "ka_rate"):
                s = metrics[p][k]
                cols += ["0" if s[x] is None else f"{s[x]:.3f}" for x in ("median", "min", "max")]
            f.write(f"{p} " + " ".join(cols) + "\n")
    title = (f"Loopback, median of {rounds} rounds (bars: lowest-highest)" if rounds > 1 else "Loopback, one run")
    script = f"""
set terminal pngcairo size 1000,520 noenhanced font ",10"
set output '{os.path.join(out, "compare.png")}'
set title '{title}: each proxy as a fraction of the direct path measured right before it'
set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set ylabel 'ratio to direct (1.0 = no proxy)'
set grid ytics
set key outside right top
set xtics rotate by -20
plot '{data}' using 2:3:4:xtic(1) title 'iperf3 1 stream', '' using 5:6:7 title 'iperf3 4 streams', \\
     '' using 8:9:10 title 'new connections/s', '' using 11:12:13 title 'keep-alive req/s'
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=False)
    except FileNotFoundError:
        print("gnuplot is not installed: no chart (bench/compare installs gnuplot-nox)", file=sys.stderr)
