"""`iadr1-reward-server`: the scorer over HTTP, fit for a shared network.

    iadr1-reward-server [--host 127.0.0.1] [--port 5000] [--workers N] [--config scorer.yaml]

It refuses to start (exit 2, naming the fix) rather than run unsafely or not as asked: a
port out of range, a host it cannot bind, a bad worker count or limit, a scorer config
that does not load, a token that is not printable ASCII, or an address beyond loopback
without a token (unless `--allow-unauthenticated`). Every limit has a flag; see
docs/server.md for what each does and which layer enforces it.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from ..scorer import Scorer
from .settings import ENV_TOKEN, ServerSettings, limit_fields

logger = logging.getLogger(__name__)

MAX_WORKERS = 256
APP = "rewards.server.app:app_from_env"
PROTOCOL = "rewards.server.h11_guard:GuardedH11Protocol"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iadr1-reward-server",
        description="Serve the SC-GRPO scorer over HTTP (OpenRLHF's /get_reward and /score).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve = parser.add_argument_group("where and how")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind; beyond loopback a token is required")
    serve.add_argument("--port", type=int, default=5000, help="TCP port, 1-65535")
    serve.add_argument("--workers", type=int, default=1, help="worker processes, each with its own scorer")
    serve.add_argument(
        "--config",
        help="scorer config (JSON/YAML: preset, grid, weights, vocabulary); "
        "a training run's scorer.json scores as the run did (default: the contract)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="server log level",
    )
    auth = parser.add_argument_group("authentication (every path but /health and /metrics)")
    auth.add_argument("--token-file", type=Path, help=f"read the bearer token from this file (or set {ENV_TOKEN})")
    auth.add_argument(
        "--token", help="the bearer token itself (other local users can read it in `ps`: prefer the two above)"
    )
    auth.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve beyond loopback without a token (a private network only)",
    )
    limits = parser.add_argument_group("limits (see docs/server.md)")
    for item in limit_fields():
        kind = type(item.default)
        limits.add_argument(_flag(item.name), type=kind, default=item.default, help=item.metadata["help"])
    return parser


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def is_loopback(host: str) -> bool:
    """Whether `host` binds loopback only; ValueError for a host this machine cannot resolve."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError) as error:
        raise ValueError(f"--host {host!r} is neither an IP address nor a name this machine resolves") from error
    return all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


def read_token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, $IADR1_REWARD_TOKEN or --token, checked to be sendable."""
    token = None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"--token-file: cannot read {args.token_file} ({error})") from error
    elif os.environ.get(ENV_TOKEN):
        token = os.environ[ENV_TOKEN].strip()
    elif args.token is not None:
        logger.warning("--token is visible to every local user in `ps`; prefer %s or --token-file", ENV_TOKEN)
        token = args.token.strip()
    if token is not None and not (token.isascii() and token.isprintable() and " " not in token and token):
        raise ValueError("the token must be non-empty printable ASCII without spaces (an HTTP header carries it)")
    return token


def check(args: argparse.Namespace) -> ServerSettings:
    """Every start-up check; ValueError naming what to fix."""
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} is not a TCP port (1-65535)")
    if not 1 <= args.workers <= MAX_WORKERS:
        raise ValueError(f"--workers {args.workers} must be between 1 and {MAX_WORKERS}")
    for item in limit_fields():
        value = getattr(args, item.name)
        if isinstance(item.default, int) and value < 1:
            raise ValueError(f"{_flag(item.name)} must be at least 1")
        if isinstance(item.default, float) and not value > 0:
            raise ValueError(f"{_flag(item.name)} must be above 0 seconds")
    token = read_token(args)
    if not is_loopback(args.host) and token is None and not args.allow_unauthenticated:
        raise ValueError(
            f"refusing to serve on {args.host} without a token: anyone who reaches the port could call it. "
            f"Set {ENV_TOKEN} or --token-file, or pass --allow-unauthenticated on a private network"
        )
    try:
        Scorer.from_config(args.config)  # fail here, clearly, not in every worker
    except (ValueError, TypeError) as error:
        raise ValueError(f"--config: {error}") from error
    return ServerSettings(
        config=os.path.abspath(args.config) if args.config else None,
        token=token,
        **{item.name: getattr(args, item.name) for item in limit_fields()},
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = check(args)
    except ValueError as error:
        parser.error(str(error))
    # Workers are separate processes: settings travel in the environment (never in argv,
    # which every local user can read), metrics in a fresh folder they all write to.
    os.environ.update(settings.to_env())
    metrics_dir = tempfile.mkdtemp(prefix="iadr1-reward-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        import uvicorn

        uvicorn.run(
            APP,
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            http=PROTOCOL,  # uvicorn's h11 protocol with our timeouts (httptools has no header limit)
            h11_max_incomplete_event_size=settings.max_header_bytes,
            timeout_keep_alive=settings.keep_alive_timeout,
            log_level=args.log_level,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
