#!/usr/bin/env bash
# Connection setup on its own: the shared harness's Node generators against ocpprpc's peer server,
# with the server's CPU per connection read from /proc (bench/README.md, "Connection setup").
#
#   bench/setup_rate.sh asyncio|trio w4|w5 [N] [--profile OUT]
#
# w4: N upgrades, nothing else (common/node/conn_client.cjs); w5: N stations each upgrading and
# sending a BootNotification (common/node/fleet_client.cjs, 50 lanes).  The server runs with
# strict validation and tune_gc()'s thresholds (--gc threshold), as `python -m ocpprpc serve` does
# (GC_MODE=default|freeze|off|threshold picks another collector setting).
# --profile OUT samples the server with py-spy (if installed) into OUT (raw, for flame graphs).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_DIR="${BENCH_DIR:-$HERE/../../shared/bench}"
PYTHON="${PYTHON:-${BENCH_HOME:-/tmp/bench}/venv/bin/python}"
BACKEND="${1:?asyncio or trio}"; WORKLOAD="${2:?w4 or w5}"; N="${3:-3000}"; PROFILE=""
if [ "${4:-}" = "--profile" ]; then PROFILE="${5:?--profile needs a file}"; fi
ulimit -n "$(ulimit -Hn)"
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cd "$HERE/peer/ocpprpc"
PYTHONPATH="$BENCH_DIR/common" "$PYTHON" server.py --port "$PORT" --workload "$WORKLOAD" --msg hb \
    --backend "$BACKEND" --strict 1 --gc "${GC_MODE:-threshold}" > /dev/null &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
sleep 1.5
SPY=""
if [ -n "$PROFILE" ]; then py-spy record -p "$SERVER" -o "$PROFILE" -f raw -r 200 > /dev/null 2>&1 & SPY=$!; sleep 0.5; fi
cpu() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
BEFORE=$(cpu)
cd "$BENCH_DIR"
if [ "$WORKLOAD" = "w4" ]; then
    (sleep 0.3; echo go; sleep $((N / 500 + 2)); echo close) |
        node common/node/conn_client.cjs --port "$PORT" --n "$N" --warm 20 --concurrency 50 | grep '"opened"'
else
    node common/node/fleet_client.cjs --port "$PORT" --n "$N" --concurrency 50 --hb 60 --mv 10 --window 1 \
        --settle 0 --timeout 10 --seed 1 | grep '"booted"'
fi
AFTER=$(cpu)
echo "server CPU per connection: $(( (AFTER - BEFORE) * 1000000 / $(getconf CLK_TCK) / N )) µs (the idle hold after the opening included)"
if [ -n "$SPY" ]; then kill -INT "$SPY"; wait "$SPY" || true; fi
