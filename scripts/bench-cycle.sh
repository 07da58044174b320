#!/usr/bin/env bash
# A monitoring cycle, vigil against a puppeteer-core script doing the same work on the same
# Chromium (scripts/bench-cycle/cycle.mjs): 20 local pages at 1280x800, viewport shots, a
# reference pass then a test pass with 4 real changes, run after run, interleaved. Prints wall
# time, CPU time of the whole process tree and its peak memory (PSS) for each pass, then a
# table with the ratios (docs/benchmarks.md, "A monitoring cycle").
#
#   cargo build --release && scripts/bench-cycle.sh
#   RUNS=5 WORKERS="1 4" VIGIL=path/to/vigil scripts/bench-cycle.sh
#   WAIT_UNTIL=load scripts/bench-cycle.sh     # vigil waits as the script does
#   VIGIL_CAPTURE="stability_timeout: 0s" VIGIL_DEFAULTS="retries_on_diff: 0" scripts/bench-cycle.sh
#                                              # vigil without its stability shot and confirming capture
#
# vigil runs `vigil run --once` on a generated config (SQLite, defaults but `full_page: false`,
# `threshold: 0` so that any differing pixel counts as the script counts it, and `wait_until:
# $WAIT_UNTIL`, default `networkidle`, vigil's default). Needs node + npm.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
B="$ROOT/scripts/bench-cycle"
VIGIL="${VIGIL:-${CARGO_TARGET_DIR:-$ROOT/target}/release/vigil}"
PORT="${PORT:-8798}"
RUNS="${RUNS:-3}"
WORKERS="${WORKERS:-1 4}"
WAIT_UNTIL="${WAIT_UNTIL:-networkidle}"
WORK="${WORK:-${TMPDIR:-/tmp}/vigil-bench-cycle}"
[ -x "$VIGIL" ] || { echo "vigil binary not found at $VIGIL (cargo build --release, or set VIGIL)" >&2; exit 1; }
(cd "$B" && [ -d node_modules ] || PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund >/dev/null)
rm -rf "$WORK" && mkdir -p "$WORK"
RESULTS="$WORK/results.jsonl"
node "$B/site.mjs" "$PORT" 2>/dev/null & SITE=$!
trap 'kill $SITE 2>/dev/null' EXIT
base="http://127.0.0.1:$PORT"
for _ in $(seq 50); do curl -sf -o /dev/null "$base/page/0" && break; sleep 0.1; done
mode() { curl -sf -X POST "$base/_mode/$1"; }

config() { # WORKERS DIR
  cat > "$2/vigil.yaml" <<YAML
storage: {database_url: "sqlite://$2/vigil.db", data_dir: "$2/data", baselines_dir: "$2/baselines"}
capture: {workers: $1, allow_private: [127.0.0.1/32]${VIGIL_CAPTURE:+, $VIGIL_CAPTURE}}
defaults: {schedule: "0 0 1 1 *", full_page: false, threshold: 0, wait_until: $WAIT_UNTIL${VIGIL_DEFAULTS:+, $VIGIL_DEFAULTS}}
monitors:
$(for i in $(seq 0 19); do printf '  - {name: p%02d, url: "%s/page/%d"}\n' "$i" "$base" "$i"; done)
YAML
}

measure() { # TOOL WORKERS PASS RUN CMD...
  local log="$WORK/$1-$2-$3-$4.log"
  "$B/measure.py" "$1" "${@:5}" > "$log" 2>&1 || true
  "$B/report.py" record "$RESULTS" "$1" "$2" "$3" "$4" "$log"
}

echo "machine: $(nproc) cores; $(/usr/bin/chromium --version 2>/dev/null || echo chromium unknown); vigil: $VIGIL, wait_until: $WAIT_UNTIL${VIGIL_CAPTURE:+, capture: $VIGIL_CAPTURE}${VIGIL_DEFAULTS:+, defaults: $VIGIL_DEFAULTS}"
for run in $(seq "$RUNS"); do
  for w in $WORKERS; do
    echo "run $run, $w worker(s); load $(cut -d' ' -f1-3 /proc/loadavg)"
    dir="$WORK/vigil-$w-$run"; shots="$WORK/script-$w-$run"
    mkdir -p "$dir"; config "$w" "$dir"
    mode reference
    measure vigil "$w" reference "$run" "$VIGIL" run --once -c "$dir/vigil.yaml"
    measure script "$w" reference "$run" node "$B/cycle.mjs" reference "$w" "$base" "$shots"
    mode test
    measure vigil "$w" test "$run" "$VIGIL" run --once -c "$dir/vigil.yaml"
    measure script "$w" test "$run" node "$B/cycle.mjs" test "$w" "$base" "$shots"
  done
done
echo
"$B/report.py" table "$RESULTS"
