#!/usr/bin/env python3
"""scripts/bench-cycle.sh's bookkeeping.
    report.py record RESULTS TOOL WORKERS PASS RUN LOG   # one measured pass, appended
    report.py table RESULTS                               # the table and the ratios
A page counts as changed when vigil's verdict is `changed` or the script's pixelmatch counted a
differing pixel. The site changes pages 3, 9, 14 and 17 in the test pass; any other page seen
changed is a false positive, any of those four not seen changed is a miss.
"""
import json
import re
import statistics
import sys
from collections import defaultdict

REAL = {3, 9, 14, 17}
ANIMATED_OR_FONT = set(range(12, 19))


def record(results, tool, workers, pass_, run, log):
    text = open(log, encoding="utf-8", errors="replace").read()
    measured = json.loads([l for l in text.splitlines() if l.startswith('{"measure"')][-1])
    if tool == "vigil":
        changed = sorted(int(m) for m in re.findall(r"^p(\d\d)\s+\S+\s+changed\b", text, re.M))
        failed = len(re.findall(r"^p\d\d\s+\S+\s+failed\b", text, re.M))
    else:
        line = [l for l in text.splitlines() if l.startswith('{"pass"')][-1]
        changed, failed = sorted(json.loads(line)["changed"]), 0
    row = dict(measured, tool=tool, workers=int(workers), pass_=pass_, run=int(run), changed=changed, failed=failed)
    with open(results, "a") as f:
        f.write(json.dumps(row) + "\n")
    fp = [p for p in changed if p not in REAL] if pass_ == "test" else changed
    print(f"  {tool:8} workers={workers} {pass_:9} wall {row['wall_s']:6.2f} s  cpu {row['cpu_s']:6.2f} s "
          f"({split(row)})  pss {row['peak_pss_mib']:5} MiB  changed {changed}  false+ {fp}  failed {failed}",
          flush=True)


def split(row):
    """The CPU time by process: the tool's own, Chromium's browser process, the rest."""
    own, browser = row.get("own_cpu_s", 0), row.get("browser_cpu_s", 0)
    return f"own {own:.2f}, browser {browser:.2f}, renderers etc. {max(row['cpu_s'] - own - browser, 0):.2f}"


def table(results):
    rows = [json.loads(l) for l in open(results)]
    groups = defaultdict(list)
    for r in rows:
        groups[(r["workers"], r["pass_"], r["tool"])].append(r)
    print("| workers | pass | tool | wall s (median) | CPU s | CPU/page ms | tree PSS MiB | false + (animated/font) | missed | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    med = {}
    for (w, p, t), rs in sorted(groups.items()):
        wall = statistics.median(r["wall_s"] for r in rs)
        cpu = statistics.median(r["cpu_s"] for r in rs)
        pss = statistics.median(r["peak_pss_mib"] for r in rs)
        fp = sum(len([c for c in r["changed"] if c not in REAL]) if p == "test" else len(r["changed"]) for r in rs)
        fpa = sum(len([c for c in r["changed"] if c in ANIMATED_OR_FONT and c not in REAL]) for r in rs)
        missed = sum(len(REAL - set(r["changed"])) for r in rs) if p == "test" else 0
        med[(w, p, t)] = (wall, cpu, pss)
        print(f"| {w} | {p} | {t} | {wall:.2f} | {cpu:.2f} | {cpu / 20 * 1000:.0f} | {pss:.0f} | {fp} ({fpa}) | {missed} | {len(rs)} |")
    print()
    print("CPU s by process (medians): the tool's own process (vigil; node for the script), Chromium's")
    print("browser process, the rest of the tree (renderers, zygotes, utilities)")
    print()
    print("| workers | pass | tool | own | browser | renderers etc. |")
    print("|---|---|---|---|---|---|")
    for (w, p, t), rs in sorted(groups.items()):
        own = statistics.median(r.get("own_cpu_s", 0) for r in rs)
        browser = statistics.median(r.get("browser_cpu_s", 0) for r in rs)
        rest = statistics.median(max(r["cpu_s"] - r.get("own_cpu_s", 0) - r.get("browser_cpu_s", 0), 0) for r in rs)
        print(f"| {w} | {p} | {t} | {own:.2f} | {browser:.2f} | {rest:.2f} |")
    print()
    roles = ["browser", "renderer", "gpu-process", "NetworkService"]
    print("Chromium's CPU s by process role (medians, as last sampled): renderers are the pages, the GPU")
    print("process composites and reads back each screenshot, the browser process encodes it")
    print()
    print("| workers | pass | tool | " + " | ".join(roles) + " | other |")
    print("|---|---|---|" + "---|" * (len(roles) + 1))
    for (w, p, t), rs in sorted(groups.items()):
        by = [r.get("by_role_cpu_s", {}) for r in rs]
        cells = [statistics.median(b.get(k, 0) for b in by) for k in roles]
        other = statistics.median(sum(v for k, v in b.items() if k not in roles) for b in by)
        print(f"| {w} | {p} | {t} | " + " | ".join(f"{c:.2f}" for c in cells) + f" | {other:.2f} |")
    print()
    for (w, p, t), (wall, cpu, pss) in sorted(med.items()):
        other = med.get((w, p, "script"))
        if t == "vigil" and other:
            print(f"workers {w}, {p}: vigil/script wall {wall / other[0]:.2f}x, CPU {cpu / other[1]:.2f}x, "
                  f"memory {pss - other[2]:+.0f} MiB")


if __name__ == "__main__":
    {"record": lambda a: record(*a), "table": lambda a: table(*a)}[sys.argv[1]](sys.argv[2:])
