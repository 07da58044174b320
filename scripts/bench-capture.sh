#!/usr/bin/env bash
# Captures per minute on a 20-page local site at 1, 2 and 4 tabs, vigil vs a puppeteer-core
# script on the same Chromium, with peak RSS of each tool and of its browser.
#   cargo build --release --example capture_throughput && scripts/bench-capture.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
B="$ROOT/scripts/bench-capture"
BIN="${VIGIL_THROUGHPUT:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/capture_throughput}"
PORT="${PORT:-8799}"
[ -x "$BIN" ] || { echo "build it first: cargo build --release --example capture_throughput" >&2; exit 1; }
(cd "$B" && [ -d node_modules ] || PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund >/dev/null)
node "$B/site.mjs" "$PORT" & SITE=$!
trap 'kill $SITE 2>/dev/null' EXIT
sleep 0.5
base="http://127.0.0.1:$PORT"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; chromium: $(/usr/bin/chromium --version 2>/dev/null || echo unknown)"
for tabs in 1 2 4; do
  "$B/peak_rss.py" "$BIN" "$tabs" "$base" load 5s
  "$B/peak_rss.py" "$BIN" "$tabs" "$base" load 0s
  "$B/peak_rss.py" node "$B/puppeteer.mjs" "$tabs" "$base"
done
for tabs in 2; do
  "$B/peak_rss.py" "$BIN" "$tabs" "$base" networkidle 5s
  "$B/peak_rss.py" node "$B/puppeteer.mjs" "$tabs" "$base" networkidle
done
