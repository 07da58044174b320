#!/usr/bin/env python3
"""Runs a command and measures its whole process tree: wall time, CPU time (user + system of
every process in the tree, Chromium's renderers included) and peak memory (PSS summed over the
tree, sampled every 200 ms).

This process makes itself the tree's subreaper, so a process orphaned by its parent still
reports its CPU time here when it ends. Prints the command's output, then one JSON line.
    measure.py LABEL CMD [ARGS...]
"""
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def children(pid):
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return out


def tree(pid):
    seen, stack = [], [pid]
    while stack:
        p = stack.pop()
        seen.append(p)
        stack.extend(children(p))
    return seen


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    label, cmd = sys.argv[1], sys.argv[2:]
    cpu0, t0 = cpu_children(), time.monotonic()
    proc = subprocess.Popen(cmd)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(pss_kib(p) for p in tree(proc.pid)))
        time.sleep(0.2)
    wall = time.monotonic() - t0
    # Orphans (a browser its parent did not wait for) were handed to this process: give them a
    # moment to end, then end them, and collect their CPU time.
    deadline = time.monotonic() + 10
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                for p in children(os.getpid()):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.05)
    cpu = cpu_children() - cpu0
    print(json.dumps({"measure": label, "exit": proc.returncode, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                      "peak_pss_mib": round(peak / 1024)}), flush=True)


if __name__ == "__main__":
    main()
