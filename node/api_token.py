"""The node's HTTP API token: the secret every write to the daemon's API must carry.

`chorus init` writes 32 random bytes as url-safe base64 text (43 characters) to
`<data dir>/api_token`, mode 0600, atomically; a repo made before tokens existed
gets one the first time it is opened. Whoever can read that file is trusted to
change the node — the same people who could edit its data directory — so the CLI
and local tools read it there and send it as `Authorization: Bearer <token>`
(node/client.py); the daemon checks it in node/auth.py.

Reading is split in two: the repo (`load_api_token`) creates a missing token and
refuses a malformed one, while clients (`read_api_token`) only ever read, and take
"no readable token" as "send none" — the daemon then says why a write was refused.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import stat
import sys
from pathlib import Path

from .atomic_file import atomic_writer
from .errors import RepoError

__all__ = [
    "TOKEN_FILE",
    "create_api_token",
    "load_api_token",
    "read_api_token",
    "token_matches",
]

TOKEN_FILE = "api_token"
#: Random bytes in a new token (as url-safe base64 text: 43 characters).
TOKEN_BYTES = 32
#: An RFC 6750 b64token (what may follow "Bearer ") at least 32 characters long, so a
#: hand-written token is still hard to guess.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{32,}=*")

log = logging.getLogger("chorus.repo")


def create_api_token(repo_path: Path) -> str:
    """Write a fresh token to `<repo_path>/api_token` (mode 0600) and return it.

    Replaces a token already there: only `chorus init` (which may find one left by
    an init that crashed before finishing) and a missing file lead here.
    """
    token = secrets.token_urlsafe(TOKEN_BYTES)
    path = repo_path / TOKEN_FILE
    with atomic_writer(path) as out:
        if sys.platform != "win32":
            os.fchmod(out.fileno(), 0o600)
        out.write(token.encode("ascii") + b"\n")
    return token


def load_api_token(repo_path: Path) -> str:
    """The repo's token, created (and logged) if the repo predates tokens.

    RepoError names the file if it cannot be read or does not hold a token; a token
    readable by other users is made private again, with a warning.
    """
    path = repo_path / TOKEN_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        token = create_api_token(repo_path)
        log.warning("created the API token %s (this repo predates API tokens)", path)
        return token
    except OSError as exc:
        raise RepoError(f"cannot read {path}: {exc}") from None
    token = _parse(raw)
    if token is None:
        raise RepoError(
            f"{path} does not hold an API token (32 or more url-safe base64 characters); "
            "delete it and a new one is made when the repo is next opened"
        )
    _keep_private(path)
    return token


def read_api_token(data_dir: Path) -> str | None:
    """For clients: the token in `data_dir`, or None if it is absent, unreadable or
    malformed (the daemon then refuses writes and says why)."""
    try:
        raw = (data_dir / TOKEN_FILE).read_bytes()
    except OSError:
        return None
    return _parse(raw)


def token_matches(expected: str, presented: str) -> bool:
    """Constant-time comparison (the time taken does not tell how much matched)."""
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))


def _parse(raw: bytes) -> str | None:
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    return text if _TOKEN.fullmatch(text) else None


def _keep_private(path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - no POSIX modes there
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("%s was readable by others (mode %o); made it 0600", path, mode)
    except OSError as exc:
        log.warning("cannot check the permissions of %s: %s", path, exc)
