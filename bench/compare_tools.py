#!/usr/bin/env python3
"""bench/compare's command line over bench/tools (one module per job): a process tree's CPU, PSS and pipes
(procstats), the idle-connection holder (holder), iperf3 and wrk output (parse), the proxies and goals of
compare_setup.json (setup), and the tables and chart (report). Standard library only.

  compare_tools.py cpu|pss|pipes PID
  compare_tools.py hold --upstream-port P --proxy-port P --pid PID [-n N] [--timeout S]
  compare_tools.py parse iperf|wrk FILE
  compare_tools.py proxies                     # the proxies' names, one a line, in the setup's order
  compare_tools.py command NAME --port P --upstream P --tmp DIR --tcp-proxy EXE --bench-proxy EXE
                                               # that proxy's argv, one argument a line
  compare_tools.py head-to-head                # the pair the head-to-head runs compare: MINE PEER
  compare_tools.py report RESULTS.jsonl OUT_DIR
Every subcommand takes --setup FILE (default: bench/compare_setup.json)."""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tools import holder, parse, procstats, report, setup  # noqa: E402


def main():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--setup", default=setup.DEFAULT, help="the proxies and goals (JSON)")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("cpu", "pss", "pipes"):
        p = sub.add_parser(name, parents=[common])
        p.add_argument("pid", type=int)
    p = sub.add_parser("hold", parents=[common])
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--proxy-port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("parse", parents=[common])
    p.add_argument("kind", choices=sorted(parse.PARSERS))
    p.add_argument("path")
    sub.add_parser("proxies", parents=[common])
    sub.add_parser("head-to-head", parents=[common])
    p = sub.add_parser("command", parents=[common])
    p.add_argument("name")
    for flag in ("--port", "--upstream", "--tmp", "--tcp-proxy", "--bench-proxy"):
        p.add_argument(flag, required=True)
    p = sub.add_parser("report", parents=[common])
    p.add_argument("results")
    p.add_argument("out")
    args = ap.parse_args()

    if args.cmd == "cpu":
        print(f"{procstats.tree_cpu(args.pid):.3f}")
    elif args.cmd == "pss":
        print(procstats.tree_pss_kib(args.pid))
    elif args.cmd == "pipes":
        print(procstats.tree_pipes(args.pid))
    elif args.cmd == "hold":
        print(json.dumps(holder.hold(args.upstream_port, args.proxy_port, args.pid, args.n, args.timeout)))
    elif args.cmd == "parse":
        print(json.dumps(parse.parse(args.kind, args.path)))
    else:
        try:
            conf = setup.load(args.setup)
            if args.cmd == "proxies":
                print("\n".join(setup.names(conf)))
            elif args.cmd == "head-to-head":
                print(conf["goals"]["mine"], conf["goals"]["peer"])
            elif args.cmd == "command":
                print("\n".join(setup.command(conf, args.name, port=args.port, upstream=args.upstream, tmp=args.tmp,
                                              tcp_proxy=args.tcp_proxy, bench_proxy=args.bench_proxy)))
            else:
                report.report(args.results, args.out, conf)
        except (OSError, ValueError, KeyError) as e:
            print(f"compare_tools.py {args.cmd}: {e}", file=sys.stderr)
            sys.exit(2)


if __name__ == "__main__":
    main()
