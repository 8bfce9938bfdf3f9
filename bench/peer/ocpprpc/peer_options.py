"""Options and the TLS certificate shared by the ocpprpc peer's server and client."""

from __future__ import annotations

import argparse
import os


def add_tcp_stream(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tcp-stream",
        default="auto",
        choices=["auto", "asyncio", "anyio", "socket"],
        help="ocpprpc's tcp_stream option",
    )
    parser.add_argument("--tls", type=int, default=0, help="1: wss:// (certificate from ../make_cert.sh)")
    parser.add_argument("--deflate", type=int, default=0, help="1: permessage-deflate on both ends")
    parser.add_argument(
        "--ws-codec",
        default="auto",
        choices=["auto", "ocpprpc", "websockets", "wsproto"],
        help="ocpprpc's ws_codec option, on both ends",
    )
    parser.add_argument(
        "--layers",
        default="",
        help="server only: comma-separated CSMS layers to switch on, to measure what each costs: "
        "middleware (one pass-through message middleware), ratelimit (a global and a per-action "
        "budget per station, never breached), events (a subscriber on the security-event hub), "
        "exchangelog (ExchangeLog at INFO into a handler that drops the records)",
    )
    parser.add_argument(
        "--gc",
        default="default",
        choices=["default", "freeze", "threshold", "survivors", "off"],
        help="server only (issue 17, W5's tail): freeze = gc.freeze() at start and every 20 s "
        "(settled connections leave the collector's view); threshold = ocpprpc.tune_gc() "
        "(50000, 20, 100); survivors = ocpprpc.tune_gc(freeze_survivors=True) (what survives a "
        "collection is frozen); off = gc.disable() (to measure what the collector costs)",
    )
    # The cost of seeing it (issue 15); the client takes and ignores them (variant args go to both).
    parser.add_argument("--metrics", type=int, default=0, help="1: the server runs with metrics=True")
    parser.add_argument(
        "--exchange-log",
        type=int,
        default=0,
        help="1: the server logs every message (ExchangeLog, JSON lines, to /dev/null)",
    )


def cert_dir() -> str:
    """The folder holding the self-signed cert.pem/key.pem that the TLS variants share."""
    import subprocess

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "make_cert.sh")
    return subprocess.run([script], check=True, capture_output=True, text=True).stdout.strip()
