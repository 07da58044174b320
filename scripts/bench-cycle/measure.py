#!/usr/bin/env python3
"""Runs a command and measures its whole process tree: wall time, CPU time (user + system of
every process in the tree, Chromium's renderers included) and peak memory (PSS summed over the
tree, sampled every 200 ms).

The CPU time is also split: the command's own process (vigil, or node for the script) and
Chromium's browser process, each as last sampled (so up to 200 ms of each is missed and counted
with the rest), and the rest of the tree (renderers, zygotes, the network and GPU utilities).

This process makes itself the tree's subreaper, so a process orphaned by its parent still
reports its CPU time here when it ends. Each of Chromium's processes is also sampled by its role
(`by_role_cpu_s`: browser, renderer, gpu-process, NetworkService, zygote...), as last sampled.
Prints the command's output, then one JSON line.
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


def cpu_of(pid):
    """User + system CPU seconds of one process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def args_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            # A forked process's title is rewritten as one string: split at spaces too.
            return f.read().decode(errors="replace").replace("\0", " ").split()
    except OSError:
        return None


def parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def namespace_init(pid):
    """Whether `pid` is process 1 of a PID namespace of its own (the last `NSpid:` of its status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            ids = next((l.split()[1:] for l in f if l.startswith("NSpid:")), [])
        return bool(ids) and ids[-1] == "1"
    except OSError:
        return False


def kind(pid):
    """A Chromium process's role (`--type=`; a utility by its service, e.g. `NetworkService`),
    `browser` for one without a type, or None when it is gone. A process forked by a zygote that
    kept the zygote's name is a renderer (or, from the unsandboxed zygote, the GPU process)."""
    args = args_of(pid)
    if args is None:
        return None
    flag = lambda args, name: next((a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")), None)
    t = flag(args, "type")
    if t == "utility":
        return (flag(args, "utility-sub-type") or "utility").rsplit(".", 1)[-1]
    if t == "zygote":
        ppid = parent_of(pid) or 0
        parent = args_of(ppid) or []
        # Under the namespace sandbox the forking zygote is the child of the namespace's init.
        if flag(parent, "type") == "zygote" and not namespace_init(ppid):
            return "gpu-process" if "--no-zygote-sandbox" in parent else "renderer"
    return t or "browser"


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def by_role(typed):
    out = {}
    for role, c in typed.values():
        out[role] = round(out.get(role, 0) + c, 2)
    return dict(sorted(out.items()))


def main():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    label, cmd = sys.argv[1], sys.argv[2:]
    cpu0, t0 = cpu_children(), time.monotonic()
    proc = subprocess.Popen(cmd)
    peak, own, browser, typed, kinds = 0, 0.0, {}, {}, {}
    while proc.poll() is None:
        pids = tree(proc.pid)
        # Every Chromium process's CPU as last sampled, by its role.
        for p in pids[1:]:
            # Read again until it says: a forked process is named as the zygote until it renames itself.
            if kinds.get(p) in (None, "zygote"):
                kinds[p] = kind(p) or kinds.get(p)
            c = cpu_of(p)
            if c is not None and kinds[p] is not None:
                typed[p] = (kinds[p], c)
        peak = max(peak, sum(pss_kib(p) for p in pids))
        own = cpu_of(proc.pid) or own
        # The browser: the command's direct children (Chromium's renderers are its grandchildren).
        for p in children(proc.pid):
            c = cpu_of(p)
            if c is not None:
                browser[p] = c
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
                      "own_cpu_s": round(own, 2), "browser_cpu_s": round(sum(browser.values()), 2),
                      "by_role_cpu_s": by_role(typed), "peak_pss_mib": round(peak / 1024)}), flush=True)


if __name__ == "__main__":
    main()
