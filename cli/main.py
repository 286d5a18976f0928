"""The `chorus` command: parse arguments, call into `node/`, print the result.

Verbs and flags follow Kubo's CLI where chorus does the same job (`add -Q -n
--cid-version 1`, `cat`, `pin ls`), so IPFS users need nothing new. Every failure
is one `chorus: error: ...` line on stderr and a non-zero exit: 1 for a refused
operation, 2 for bad usage, 130 for Ctrl-C. No traceback reaches the user.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from protocol.errors import ChorusError

from . import content, coop, daemon_cmds, demo, keys, ledger, release, status, store
from .console import fail
from .examples import add_examples

__all__ = ["build_parser", "main"]


def _data_dir(value: str | None) -> Path:
    from node.repo import default_data_dir

    if value:
        return Path(value).expanduser()
    return default_data_dir()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chorus",
        description="Node software of a music co-op: IPFS-compatible content and a signed ledger.",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=os.environ.get("CHORUS_DATA"),
        help="the node's data directory (env CHORUS_DATA; default: per-user data dir)",
    )
    parser.add_argument("--version", action="version", version=f"chorus {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    store.register_init(commands)
    content.register(commands)
    store.register(commands)
    keys.register(commands)
    ledger.register(commands)
    coop.register(commands)
    release.register(commands)
    daemon_cmds.register(commands)
    status.register(commands)
    demo.register(commands)
    add_examples(parser)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chorus-coop")
    except PackageNotFoundError:
        return "0+unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.data_dir = _data_dir(args.data)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`chorus cat X | head`): not an error worth a line.
        sys.stderr.close()
        return 141
    except ChorusError as exc:
        return fail(str(exc))
    except (OSError, ValueError) as exc:
        return fail(_describe_os_error(exc))


def _describe_os_error(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
