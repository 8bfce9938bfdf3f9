"""Same-round ratios of server CPU per call between ocpprpc and the peers, from a harness run.

    python3 bench/ratios.py /tmp/harness-full/runs.jsonl

For each ocpprpc variant and workload: peer server µs/call ÷ ocpprpc server µs/call, taken
within each round (the machine is shared and noisy), then the median (min-max) over rounds.
Above 1 means ocpprpc uses less server CPU per call (per connection for W4).
"""

from __future__ import annotations

import json
import statistics
import sys

OURS = ("ocpprpc-asyncio", "ocpprpc-asyncio+strict", "ocpprpc-trio", "ocpprpc-trio+strict")
PEERS = ("py-ocpp", "ocpp-ws-io+strict")
WORKLOADS = ("w1-hb", "w1-mv", "w2-hb", "w2-mv", "w3-hb", "w3-mv", "w4")


def main(path: str) -> None:
    cost: dict[tuple[str, str, int], float] = {}
    with open(path, encoding="utf-8") as runs:
        lines = runs.readlines()
    for line in lines:
        run = json.loads(line)
        if not run.get("ok"):
            continue
        value = run.get("server_us_per_conn") if run["wid"] == "w4" else run.get("server_us_per_call")
        if value:
            cost[(run["peer"], run["wid"], run["round"])] = float(value)
    rounds = sorted({key[2] for key in cost})
    for peer in PEERS:
        print(f"\n{peer} server CPU ÷ ocpprpc server CPU (same round; median, min-max)\n")
        print("| ocpprpc variant | " + " | ".join(WORKLOADS) + " |")
        print("|---|" + "---:|" * len(WORKLOADS))
        for ours in OURS:
            cells = []
            for workload in WORKLOADS:
                ratios = [
                    cost[(peer, workload, r)] / cost[(ours, workload, r)]
                    for r in rounds
                    if (peer, workload, r) in cost and (ours, workload, r) in cost
                ]
                if not ratios:
                    cells.append("-")
                    continue
                cells.append(f"{statistics.median(ratios):.2f}x ({min(ratios):.1f}-{max(ratios):.1f})")
            print(f"| {ours} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
