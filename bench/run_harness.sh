#!/usr/bin/env bash
# Run the shared peer harness (../shared/bench, or $BENCH_DIR) with ocpprpc as a peer.
#
#   bench/run_harness.sh                         # the full comparison recorded in bench/RESULTS.md
#   bench/run_harness.sh --runs 1 --duration 1   # a quick look (any run.py options)
#
# The harness venv ($BENCH_HOME/venv, made by the harness's setup.sh) gets msgspec, the one
# runtime dependency of ocpprpc it lacks (and prometheus-client, for the -metrics variants); the peer
# imports ocpprpc from this checkout's src/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_DIR="${BENCH_DIR:-$HERE/../../shared/bench}"
export BENCH_HOME="${BENCH_HOME:-/tmp/bench}"
if [ ! -x "$BENCH_HOME/venv/bin/python" ]; then
    "$BENCH_DIR/setup.sh"
fi
"$BENCH_HOME/venv/bin/pip" install --quiet --disable-pip-version-check "msgspec>=0.19" "prometheus-client>=0.20"
if [ "$#" -eq 0 ]; then
    set -- --runs 3 \
        --peers py-ocpp,ocpp-ws-io,ocpp-ws-io+strict,raw-wsproto-asyncio,raw-wsproto-trio \
        --add-peers ocpprpc-asyncio,ocpprpc-asyncio+strict,ocpprpc-trio,ocpprpc-trio+strict
fi
exec python3 "$BENCH_DIR/run.py" --peer-dir "$HERE/peer" "$@"
