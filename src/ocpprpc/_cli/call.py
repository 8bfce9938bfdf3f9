"""``python -m ocpprpc call``: call a station connected to any node of a cluster, print its answer.

Joins the cluster as a :class:`~ocpprpc.ClusterClient` (a caller only), makes one
call, prints the answer as one line of JSON on stdout.  Every other outcome is one line
on stderr and an exit status a script can act on (:data:`EXIT`): above all, 6 means
the outcome is unknown -- the station may have acted -- so a script must not simply retry.
"""

from __future__ import annotations

import argparse
import json
import logging

from .._csms.cluster_client import ClusterClient
from .._csms.delivery import SendStatus
from ..cluster.adapter import ClusterError
from .arg_types import shown_url
from .output import CommandFailed, _say

#: Exit status per outcome (0: answered; 2: usage, before anything is sent).
EXIT: dict[SendStatus, int] = {
    SendStatus.CLUSTER_ERROR: 1,
    SendStatus.NOT_CONNECTED: 3,
    SendStatus.TIMED_OUT: 4,
    SendStatus.ERROR: 5,
    SendStatus.NODE_UNAVAILABLE: 6,
    SendStatus.CONNECTION_LOST: 6,
    SendStatus.INVALID_RESPONSE: 1,
}


class CallFailed(CommandFailed):
    """A call that did not end in an answer: one line, and its own exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


async def run_call(args: argparse.Namespace) -> None:
    # The line on stderr is the report: library log records (Redis retries...) go nowhere.
    logging.getLogger().addHandler(logging.NullHandler())
    identity, action = args.identity, args.action
    try:
        async with ClusterClient(
            args.cluster, namespace=args.cluster_namespace, call_timeout=args.timeout
        ) as client:
            outcome = await client.try_send_to_client(identity, action, args.payload, timeout=args.timeout)
    except ClusterError as exc:
        raise CallFailed(f"cannot reach the cluster at {shown_url(args.cluster)}: {exc}", 1) from None
    if outcome.ok:
        _say(json.dumps(outcome.result, ensure_ascii=False))
        return
    error = outcome.error
    status = outcome.status
    if status is SendStatus.NOT_CONNECTED:
        message = f"station {identity!r} is not connected to any node"
    elif status is SendStatus.TIMED_OUT:
        message = f"{identity!r} did not answer {action} within {args.timeout:g} s"
    elif status is SendStatus.ERROR:
        code = getattr(getattr(error, "code", None), "value", "?")
        description = getattr(error, "description", "")
        details = dict(getattr(error, "details", None) or {})
        message = f"{identity!r} answered {action} with CALLERROR {code}" + (
            f": {description}" if description else ""
        )
        if details:
            message += f" {json.dumps(details, ensure_ascii=False)}"
    elif status is SendStatus.CONNECTION_LOST:
        message = f"the connection to {identity!r} ended during {action}: outcome unknown"
    elif status is SendStatus.NODE_UNAVAILABLE:
        message = f"{action} to {identity!r}: {error}"
    else:
        message = f"{action} to {identity!r}: {error}"
    raise CallFailed(" ".join(message.split()), EXIT.get(status, 1))
