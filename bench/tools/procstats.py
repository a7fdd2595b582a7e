"""A process and its descendants, read from /proc: CPU seconds, proportional set size, pipe descriptors."""

import os

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
