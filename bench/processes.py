"""Process measurements shared by `make bench` and `make reliability`: process trees, CPU,
memory and open files, from /proc. Ports and starting/stopping servers: tests/processes.py.

Standard library only; Linux (/proc) only.
"""

import os
import resource
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, parents first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that ended and were waited for (curl runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb(pids: list[int]) -> float:
    """The largest peak resident set (VmHWM) among `pids`."""
    return max(_status_mb(pid, "VmHWM") for pid in pids)


def rss_mb(pids: list[int]) -> float:
    """The current resident set (VmRSS) of `pids`, summed."""
    return sum(_status_mb(pid, "VmRSS") for pid in pids)


def open_fds(pid: int) -> list[str]:
    """What each open file descriptor of `pid` points at (`socket:[…]`, a path, …)."""
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue  # closed between listing and reading
    return targets
