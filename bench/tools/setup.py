"""compare_setup.json: the proxies bench/compare starts and the goals the report reads. Adding a relay mode
or a goal is an entry there, not code."""

import json
import operator
import os

DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compare_setup.json")

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def load(path=None):
    """The setup, checked: every proxy has a name and a command, names are unique, every goal's bound
    has a known comparison and names proxies that are listed. A mistake raises ValueError naming it."""
    path = path or DEFAULT
    with open(path) as f:
        setup = json.load(f)
    names = []
    for p in setup.get("proxies", []):
        if not p.get("name") or not isinstance(p.get("command"), list) or not p["command"]:
            raise ValueError(f"{path}: a proxy needs a name and a command: {p}")
        if p["name"] in names:
            raise ValueError(f"{path}: proxy {p['name']} listed twice")
        names.append(p["name"])
    goals = setup.get("goals", {})
    for g in goals.get("per_round", []) + goals.get("head_to_head", []) + [goals.get("threads") or {"op": ">="}]:
        if g.get("op") not in OPS:
            raise ValueError(f"{path}: goal {g.get('title')!r} has op {g.get('op')!r}, not one of {sorted(OPS)}")
    for key in ("mine", "peer"):  # the head-to-head runs and the goals compare these two
        if goals.get(key) not in names:
            raise ValueError(f"{path}: goals.{key} {goals.get(key)!r} is not a listed proxy")
    return setup


def passes(goal, ratio):
    """Whether one ratio meets the goal's bound."""
    return ratio is not None and OPS[goal["op"]](ratio, goal["bound"])


def names(setup):
    return [p["name"] for p in setup["proxies"]]


def podproxy_builds(setup):
    return [p["name"] for p in setup["proxies"] if p.get("podproxy")]


def peers(setup):
    return [p["name"] for p in setup["proxies"] if not p.get("podproxy")]


def command(setup, name, **values):
    """The proxy's argv with {tcp_proxy}, {bench_proxy}, {upstream}, {port}, {tmp} filled in."""
    for p in setup["proxies"]:
        if p["name"] == name:
            return [arg.format(**values) for arg in p["command"]]
    raise ValueError(f"no proxy named {name!r} in the setup")
