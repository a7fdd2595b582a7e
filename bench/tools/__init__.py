"""bench/compare's helpers, one job per module: procstats (a process tree's CPU, memory and pipes from
/proc), holder (the idle-connection holder), parse (iperf3 and wrk output), setup (the proxies and goals
of compare_setup.json), report (the tables, compare.json and the chart). Standard library only."""
