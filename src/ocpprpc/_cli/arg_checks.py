"""The check step: the parsed flags judged together before the event loop starts.

Consistency between flags, password sources, files and TLS material: a mistake
found here is a :class:`~ocpprpc._cli.args.UsageError` (one line, exit status 2)
instead of a failure mid-run.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
from pathlib import Path
from typing import Any

from .._ws.tls import client_ssl_context, server_ssl_context
from .args import UsageError


def _name(args: argparse.Namespace, flag: str) -> str:
    """What a message calls *flag*'s value: the flag, or ``FILE: key`` when ``--config`` gave it."""
    names: dict[str, str] = getattr(args, "config_names", {})
    return names.get(flag, flag)


def _from_file(args: argparse.Namespace, flag: str) -> str:
    """``FILE: key: `` when ``--config`` gave *flag*'s value (a prefix for messages about it), else ''."""
    name = _name(args, flag)
    return "" if name == flag else f"{name}: "


def _password(args: argparse.Namespace) -> bytes | None:
    """The password as bytes: OCPP 1.6 allows binary ones, so nothing here decodes it.

    ``sys.argv`` and ``os.environ`` hold undecodable bytes as surrogate escapes;
    :func:`os.fsencode` gives the original bytes back.
    """
    if args.password is not None:
        secret = os.fsencode(args.password)
        source = _name(args, "--password")
    elif args.password_env is not None:
        value = os.environ.get(args.password_env)
        if value is None:
            raise UsageError(
                f"{_name(args, '--password-env')}: the environment variable {args.password_env} is not set"
            )
        secret = os.fsencode(value)
        source = f"{_name(args, '--password-env')} {args.password_env}"
    elif args.password_file is not None:
        try:
            secret = Path(args.password_file).read_bytes()
        except OSError as exc:
            raise UsageError(
                f"{_name(args, '--password-file')}: cannot read {args.password_file!r}: {exc.strerror}"
            ) from None
        secret = secret.removesuffix(b"\n").removesuffix(b"\r")
        source = f"{_name(args, '--password-file')} {args.password_file}"
    else:
        return None
    if not secret:
        raise UsageError(f"{source}: the password is empty")
    return secret


def _tls_context(make: Any, flags: dict[str, str | None], **files: Any) -> ssl.SSLContext:
    """Build a TLS context now, so a bad PEM file is a usage error and not a failure mid-run.

    *flags* names the files by the options that gave them, for the message.
    """
    try:
        context: ssl.SSLContext = make(**files)
    except ssl.SSLError as exc:
        named = ", ".join(f"{flag} {path}" for flag, path in flags.items() if path)
        raise UsageError(
            f"{named}: not usable as PEM TLS files (or the key does not match the certificate): {exc}"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read TLS file {exc.filename!r}: {exc.strerror}") from None
    return context


def _refuse(args: argparse.Namespace, flags: dict[str, Any], why: str) -> None:
    given = [_name(args, flag) for flag, value in flags.items() if value is not None]
    if given:
        raise UsageError(f"{' and '.join(given)}: {why}")


def _check_serve(args: argparse.Namespace) -> None:
    profile = args.security_profile
    args.secret = _password(args)
    password_flags = {
        "--password": args.password,
        "--password-env": args.password_env,
        "--password-file": args.password_file,
    }
    if profile in (1, 2) and args.secret is None:
        raise UsageError(
            f"{_from_file(args, '--security-profile')}security profile {profile} needs a password"
            " (--password, --password-env or --password-file)"
        )
    if profile in (0, 3):
        _refuse(
            args,
            password_flags,
            f"security profile {profile} uses no password; the password is for profiles 1 and 2",
        )
    if profile >= 2 and not args.cert:
        raise UsageError(
            f"{_from_file(args, '--security-profile')}security profile {profile} needs --cert"
            " (and --key unless it is inside --cert)"
        )
    if profile < 2:
        _refuse(args, {"--cert": args.cert, "--key": args.key}, "TLS is for security profiles 2 and 3")
    if args.key and not args.cert:
        raise UsageError(f"{_name(args, '--key')} needs --cert")
    if profile == 3 and not args.client_ca:
        raise UsageError(
            f"{_from_file(args, '--security-profile')}security profile 3 needs --client-ca"
            " (the CA that signs station certificates)"
        )
    if profile != 3:
        _refuse(args, {"--client-ca": args.client_ca}, "station certificates are for security profile 3")
    if args.key and len(args.key) != len(args.cert):
        raise UsageError(
            f"{_from_file(args, '--key')}give one --key per --cert, in the same order"
            " (or none: keys inside the --cert files)"
        )
    if args.rate_limit:
        actions = [action for action, _ in args.rate_limit]
        twice = sorted({action for action in actions if actions.count(action) > 1})
        if twice:
            raise UsageError(f"--rate-limit: {', '.join(twice)} limited more than once")
    elif args.rate_limit_action != "drop":
        raise UsageError(f"{_name(args, '--rate-limit-action')} needs at least one --rate-limit")
    if profile != 3 and args.no_cert_identity_check:
        raise UsageError(
            f"{_name(args, '--no-cert-identity-check')}: station certificates are for security profile 3"
        )
    if args.metrics_port is not None and not args.metrics:
        raise UsageError(f"{_name(args, '--metrics-port')} needs {_name(args, '--metrics')}")
    if args.metrics_port is not None and args.metrics_port == args.port != 0:
        raise UsageError(
            f"{_name(args, '--metrics-port')} {args.metrics_port} is the station port"
            f" ({_name(args, '--port')}); pick another"
        )
    args.ssl_context = None
    if profile >= 2:
        pairs = list(zip(args.cert, args.key or [None] * len(args.cert), strict=True))
        args.ssl_context = _tls_context(
            server_ssl_context,
            {
                _name(args, "--cert"): " ".join(args.cert),
                _name(args, "--key"): args.key and " ".join(args.key),
                _name(args, "--client-ca"): args.client_ca,
            },
            certfile=pairs[0][0],
            keyfile=pairs[0][1],
            extra_certs=pairs[1:],
            client_cafile=args.client_ca,
        )


def _check_station(args: argparse.Namespace) -> None:
    args.secret = _password(args)
    args.ssl_context = None
    if args.key and not args.cert:
        raise UsageError("--key needs --cert")
    if args.url.startswith("wss://"):
        args.ssl_context = _tls_context(
            client_ssl_context,
            {"--ca": args.ca, "--cert": args.cert, "--key": args.key},
            cafile=args.ca,
            certfile=args.cert,
            keyfile=args.key,
        )
    else:
        _refuse(args, {"--ca": args.ca, "--cert": args.cert, "--key": args.key}, "TLS needs a wss:// URL")


# -- running --------------------------------------------------------------------------------------


def _check_call(args: argparse.Namespace) -> None:
    try:
        payload = json.loads(args.payload, parse_constant=_no_constant)
    except ValueError as exc:
        raise UsageError(f"PAYLOAD is not JSON: {exc}") from None
    except RecursionError:
        raise UsageError("PAYLOAD is not JSON: nested too deeply") from None
    if not isinstance(payload, dict):
        raise UsageError(f"PAYLOAD must be a JSON object ({{...}}), got {type(payload).__name__}")
    args.payload = payload


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")
