#!/usr/bin/env bash
# A capture tick of 40 monitors (every minute) on one PostgreSQL and one S3 bucket, measured two
# ways: one replica with every role, then one monitor replica sending its captures through a
# balancer to two capture-only replicas (`capture.provider`). Prints, for each tick after the
# first (which creates the baselines), the time from the tick to its 40th verdict.
#   cargo build && scripts/bench-replicas.sh [path/to/vigil]
# Needs: node (the bench-capture site), PostgreSQL's server binaries and psql, curl, python3,
# and moto_server (`scripts/dev tools` puts it in .tools/venv).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/vigil}"
MOTO="${MOTO:-$ROOT/.tools/venv/bin/moto_server}"
TICKS="${TICKS:-4}"
ONE_TABS="${ONE_TABS:-2}"   # the single replica's capture.workers (each capture replica has 2)
[ -x "$BIN" ] || { echo "build it first: cargo build (or pass the binary)" >&2; exit 1; }
[ -x "$MOTO" ] || { echo "moto_server missing: scripts/dev tools" >&2; exit 1; }
INITDB="$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n 1 || true)"
[ -n "$INITDB" ] || { echo "PostgreSQL's server binaries (initdb, pg_ctl) are missing: apt-get install postgresql" >&2; exit 1; }
for tool in node psql curl python3; do command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }; done
PGBIN="$(dirname "$INITDB")"
W="$(mktemp -d)"
PIDS=()
if [ "$(id -u)" = 0 ]; then RUNAS=(runuser -u nobody --); chmod 777 "$W"; else RUNAS=(); fi
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$W/pg" -m immediate stop >/dev/null 2>&1 || true
  pkill -9 -f "user-data-dir=$W/" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SITE=$(free_port); PG=$(free_port); S3=$(free_port)
node "$ROOT/scripts/bench-capture/site.mjs" "$SITE" 2>/dev/null & PIDS+=($!)
"$MOTO" -H 127.0.0.1 -p "$S3" >/dev/null 2>&1 & PIDS+=($!)
"${RUNAS[@]}" "$PGBIN/initdb" -D "$W/pg" -U postgres --auth=trust >/dev/null
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$W/pg" -o "-p $PG -k $W -c listen_addresses=127.0.0.1 -c fsync=off" -l "$W/pg.log" start >/dev/null
for _ in $(seq 100); do curl -sf -X PUT "http://127.0.0.1:$S3/bench" >/dev/null && break; sleep 0.2; done
psql() { command psql -h 127.0.0.1 -p "$PG" -U postgres -Atq "$@"; }

echo "machine: $(nproc) cores; $("$BIN" --version); chromium: $(/usr/bin/chromium --version 2>/dev/null || echo unknown)"

# config NAME PORT PUBLIC_URL PROVIDER_URL|- [TABS]
config() {
  local name=$1 port=$2 public=$3 provider=$4 tabs=${5:-2}
  mkdir -p "$W/$name"
  {
    echo "server: {listen: 127.0.0.1:$port, public_url: \"$public\"}"
    echo "storage:"
    echo "  database_url: postgres://postgres@127.0.0.1:$PG/$DB"
    echo "  data_dir: $W/$name/data"
    echo "  baselines_dir: $W/$name/baselines"
    echo "  blobs: s3://bench/$DB"
    echo "  s3: {endpoint: \"http://127.0.0.1:$S3\", region: us-east-1, access_key_id: x, secret_access_key: x}"
    echo "auth: {api_tokens: [bench-token-0123456789]}"
    echo "capture:"
    echo "  workers: $tabs"
    echo "  allow_private: [127.0.0.0/8]"
    [ "$provider" != - ] && echo "  provider: {url: \"$provider\", api_key: bench-token-0123456789}"
    echo "webhook: {secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}"
    echo "defaults: {schedule: \"0 * * * * *\", viewports: [1280x800], full_page: true, threshold: 1%}"
    echo "monitors:"
    for i in $(seq 0 39); do echo "  - {name: m$i, url: \"http://127.0.0.1:$SITE/page/$((i % 20))\"}"; done
  } > "$W/$name.yaml"
}

start() { # NAME ROLES
  VIGIL_ROLES=$2 RUST_LOG=vigil=warn "$BIN" run --config "$W/$1.yaml" 2>"$W/$1.log" & PIDS+=($!)
}

# Waits for TICKS judged ticks and prints the seconds from each (but the first) to its 40th verdict.
measure() {
  local label=$1 deadline=$((SECONDS + 120 + TICKS * 60)) done=0
  while [ "$SECONDS" -lt "$deadline" ]; do
    done=$(psql -d "$DB" -c "SELECT count(*) FROM (SELECT scheduled_for FROM runs WHERE verdict <> 'skipped' GROUP BY scheduled_for HAVING count(*) = 40) t" 2>/dev/null || echo 0)
    [ "$done" -ge "$TICKS" ] && break
    sleep 2
  done
  [ "$done" -ge "$TICKS" ] || { echo "$label: only $done ticks judged; logs in $W" >&2; tail -5 "$W"/*.log >&2; exit 1; }
  psql -d "$DB" -c "SELECT string_agg(to_char((completed_at - scheduled_for) / 1000.0, 'FM990.0'), ' s, ' ORDER BY scheduled_for)
      FROM (SELECT scheduled_for, max(completed_at) AS completed_at FROM runs WHERE verdict <> 'skipped'
            GROUP BY scheduled_for HAVING count(*) = 40 ORDER BY scheduled_for LIMIT $TICKS OFFSET 1) t GROUP BY ()" \
    | sed "s/^/$label: tick to last verdict: /; s/$/ s/"
  psql -d "$DB" -c "SELECT 'verdicts: ' || string_agg(verdict || ' ' || n, ', ') FROM (SELECT verdict, count(*) n FROM runs GROUP BY verdict) v"
}

stop_all() { for p in "${PIDS[@]:2}"; do kill "$p" 2>/dev/null || true; done; wait "${PIDS[@]:2}" 2>/dev/null || true; PIDS=("${PIDS[@]:0:2}"); }

DB=one; psql -c "CREATE DATABASE one"
P1=$(free_port); config one "$P1" "http://127.0.0.1:$P1/" - "$ONE_TABS"
start one all
measure "1 replica (all roles, $ONE_TABS tabs)"
stop_all

DB=split; psql -c "CREATE DATABASE split"
PM=$(free_port); PC1=$(free_port); PC2=$(free_port); LB=$(free_port)
node "$ROOT/scripts/bench-replicas/balancer.mjs" "$LB" "$PC1" "$PC2" & PIDS+=($!)
config monitor "$PM" "http://127.0.0.1:$PM/" "http://127.0.0.1:$LB/"
config capture1 "$PC1" "http://127.0.0.1:$LB/" -
config capture2 "$PC2" "http://127.0.0.1:$LB/" -
start capture1 capture; start capture2 capture; start monitor api,monitor,ui
measure "1 monitor + 2 capture replicas (2 tabs each)"
