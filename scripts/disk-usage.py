#!/usr/bin/env python3
"""Measures what vigil writes per run (docs/operations.md, "Sizing").

Serves two local pages (a 1280x2406 article: one that never changes, one whose text changes at
every request), runs the given vigil binary against them with the defaults (1280x800, full page),
starts N runs of each by hand, and prints the database growth per run and the image bytes per
capture and per diff.

    cargo build && python3 scripts/disk-usage.py target/debug/vigil 20
"""
import http.server
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
         "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco "
         "laboris nisi ut aliquip ex ea commodo consequat. ")
TOKEN = "disk-usage-measurement-token"
counter = itertools.count()


def article(changing):
    stamp = f"<p>Updated {next(counter)} minutes ago</p>" if changing else ""
    sections = "".join(f"<h2>Section {i}</h2><p>{LOREM * 3}</p>" for i in range(12))
    cards = "<div class=card></div>" * 8
    return (
        "<html><head><style>body{font-family:sans-serif;max-width:860px;margin:0 auto;color:#222}"
        "nav{background:#246;color:#fff;padding:16px} h2{color:#246}"
        ".card{display:inline-block;width:180px;height:90px;margin:8px;border-radius:8px;"
        "background:linear-gradient(135deg,#8cf,#36a)}</style></head>"
        f"<body><nav>Acme · Pricing · Docs · Blog</nav>{stamp}<div>{cards}</div>{sections}"
        "<footer>© Acme</footer></body></html>"
    )


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = article(self.path.startswith("/changing")).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def api(port, method, path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers={"authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read() or b"null")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    binary, n = sys.argv[1], int(sys.argv[2])
    work = tempfile.mkdtemp(prefix="vigil-disk-usage-")
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    site_url = f"http://127.0.0.1:{site.server_address[1]}"
    port = free_port()
    config = os.path.join(work, "vigil.yaml")
    with open(config, "w") as f:
        f.write(f"""server:
  listen: 127.0.0.1:{port}
storage:
  database_url: sqlite://{work}/vigil.db
  data_dir: {work}/data
  baselines_dir: {work}/baselines
auth:
  api_tokens: ["{TOKEN}"]
capture:
  workers: 1
  allow_private: ["127.0.0.0/8"]
defaults:
  schedule: "0 0 1 1 *"
monitors:
  - name: steady
    url: {site_url}/steady
  - name: changing
    url: {site_url}/changing
""")
    daemon = subprocess.Popen([binary, "run", "--config", config], stderr=open(os.path.join(work, "vigil.log"), "w"))
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz").status == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        db = sqlite3.connect(os.path.join(work, "vigil.db"))
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        empty_pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.close()
        for i in range(n):
            for monitor in ("steady", "changing"):
                run = api(port, "POST", f"/api/monitors/{monitor}/runs")["run_ids"][0]
                while api(port, "GET", f"/api/runs/{run}")["status"] != "done":
                    time.sleep(0.1)
            print(f"\r{2 * (i + 1)}/{2 * n} runs", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    finally:
        daemon.terminate()
        daemon.wait()
    db = sqlite3.connect(os.path.join(work, "vigil.db"))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]

    def blob(sha):
        return os.path.getsize(os.path.join(work, "data/blobs/sha256", sha[:2], sha[2:4], sha))

    report = {"runs": 2 * n, "database_bytes_per_run": (pages - empty_pages) * page_size // max(1, 2 * n)}
    for monitor in ("steady", "changing"):
        captures = [blob(s) for (s,) in db.execute(
            "SELECT DISTINCT current_sha256 FROM runs WHERE monitor = ? AND current_sha256 IS NOT NULL", (monitor,))]
        diffs = [blob(s) for (s,) in db.execute(
            "SELECT DISTINCT diff_sha256 FROM runs WHERE monitor = ? AND diff_sha256 IS NOT NULL", (monitor,))]
        report[monitor] = {
            "distinct_captures": len(captures),
            "bytes_per_capture": sum(captures) // max(1, len(captures)),
            "distinct_diffs": len(diffs),
            "bytes_per_diff": sum(diffs) // max(1, len(diffs)),
        }
    width, height = db.execute("SELECT width, height FROM assets LIMIT 1").fetchone()
    report["capture_size"] = f"{width}x{height}"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
