#!/usr/bin/env python3
"""Runs a command and samples the resident memory of its process tree every 50 ms.

Prints the command's own output, then one JSON line: peak RSS (MiB) of the command's main
process, of its descendants (Chromium), and of the whole tree at once.
    peak_rss.py CMD [ARGS...]
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench-cycle"))
from measure import children  # noqa: E402 (the tree walk is shared)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


proc = subprocess.Popen(sys.argv[1:])
peak_main = peak_children = peak_total = 0
while proc.poll() is None:
    main = rss_kib(proc.pid)
    stack, kids = children(proc.pid), 0
    while stack:
        p = stack.pop()
        kids += rss_kib(p)
        stack.extend(children(p))
    peak_main, peak_children = max(peak_main, main), max(peak_children, kids)
    peak_total = max(peak_total, main + kids)
    time.sleep(0.05)
print(json.dumps({"peak_rss_mib": {"main": round(peak_main / 1024), "browser": round(peak_children / 1024),
                                   "total": round(peak_total / 1024)}}), flush=True)
sys.exit(proc.returncode)
