"""iperf3 (-J) and wrk (--latency) output, read into the figures bench/compare records."""

import json
import re


def parse_iperf(path):
    with open(path) as f:
        data = json.load(f)
    if "error" in data:
        return {"error": data["error"]}
    end = data["end"]
    result = {"bps": end["sum_received"]["bits_per_second"], "bytes": end["sum_received"]["bytes"],
              "seconds": end["sum_received"]["seconds"]}
    # iperf3's own processes (each single-threaded here), in percent of one CPU: where the rest of the CPU went.
    cpu = end.get("cpu_utilization_percent", {})
    if "host_total" in cpu and "remote_total" in cpu:
        result["client_cpu_pct"] = cpu["host_total"]
        result["server_cpu_pct"] = cpu["remote_total"]
    return result


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


PARSERS = {"iperf": parse_iperf, "wrk": parse_wrk}


def parse(kind, path):
    """The figures as a dict; a file that cannot be read gives {"error": ...}, never an exception."""
    try:
        return PARSERS[kind](path)
    except (OSError, ValueError, KeyError, AttributeError) as e:
        return {"error": f"{kind}: {e}"}
