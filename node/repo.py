"""The node's data directory ("repo"): its config, its lock and the stores inside it.

    <data dir>/
        config.json     {"version": 1, "quota": <bytes> | null, ...}
        repo.lock       held (flock) by the one process using the repo
        identity.key    the node's Ed25519 seed (node/identity.py), mode 0600
        api_token       the HTTP API's write token (node/api_token.py), mode 0600
        blocks.sqlite   the blockstore (node/blockstore.py)
        ledger.sqlite   the ledger: accepted entries, feeds, Merkle log (node/ledger_store.py)
        keys/           members' signing keys (node/keystore.py)

`Repo.init` creates it and `Repo.open` opens it; both take the lock first, because
the stores inside assume a single process (the blockstore drops batches it finds
half-written when it opens). config.json is written last during init, so its
presence means "initialised", and it is replaced atomically. Later stores (the
identity key, the ledger database) become more attributes opened here; keys of
config.json this version does not know are kept when it is rewritten.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import platformdirs
from nacl.signing import SigningKey

from .api_token import create_api_token, load_api_token
from .atomic_file import write_atomically
from .blockstore import FILE_NAME as BLOCKSTORE_FILE
from .blockstore import Blockstore
from .errors import RepoError
from .identity import create_identity, load_identity
from .ledger_store import FILE_NAME as LEDGER_FILE
from .ledger_store import LedgerStore

__all__ = [
    "CONFIG_FILE",
    "DATA_DIR_ENV",
    "LOCK_FILE",
    "REPO_VERSION",
    "Repo",
    "RepoConfig",
    "default_data_dir",
]

CONFIG_FILE = "config.json"
LOCK_FILE = "repo.lock"
#: Layout version written to config.json; a repo from a newer chorus is refused.
REPO_VERSION = 1
#: Environment variable that overrides the default data directory.
DATA_DIR_ENV = "CHORUS_DATA"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$CHORUS_DATA if set, else the per-user data dir (e.g. ~/.local/share/chorus).

    `environ` defaults to `os.environ`; pass a mapping to decide without touching it.
    """
    env = os.environ if environ is None else environ
    override = env.get(DATA_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("chorus", appauthor=False))


@dataclass(frozen=True, slots=True)
class RepoConfig:
    """The contents of config.json. `extra` holds keys this version does not know."""

    version: int = REPO_VERSION
    quota: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = {**self.extra, "version": self.version, "quota": self.quota}
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, source: Path) -> RepoConfig:
        """Parse config.json; RepoError names the file and the bad field."""
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RepoError(f"{source} is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RepoError(f"{source} must hold a JSON object, not {type(body).__name__}")
        version = body.pop("version", None)
        if type(version) is not int or version < 1:
            raise RepoError(f"{source}: 'version' must be a positive integer, not {version!r}")
        if version > REPO_VERSION:
            raise RepoError(
                f"{source}: repo version {version} was written by a newer chorus "
                f"(this one understands up to {REPO_VERSION})"
            )
        quota = body.pop("quota", None)
        if quota is not None and (type(quota) is not int or quota < 0):
            raise RepoError(
                f"{source}: 'quota' must be a non-negative number of bytes or null, not {quota!r}"
            )
        return cls(version=version, quota=quota, extra=body)


class Repo:
    """An open, locked data directory. Use `Repo.init` or `Repo.open`, then `close()`
    (or a `with` block)."""

    def __init__(
        self,
        path: Path,
        config: RepoConfig,
        lock: _RepoLock,
        blockstore: Blockstore,
        identity: SigningKey,
        api_token: str,
        ledger: LedgerStore,
    ) -> None:
        self.path = path
        self.config = config
        self.blockstore = blockstore
        #: The node's Ed25519 key: its libp2p identity and its signing key.
        self.identity = identity
        #: The secret that writes to the daemon's HTTP API must carry (node/auth.py).
        self.api_token = api_token
        #: The node's ledger: accepted entries in log order (node/ledger_store.py).
        self.ledger = ledger
        self._lock = lock
        self._closed = False

    @classmethod
    def init(cls, path: Path | str, *, quota: int | None = None) -> Repo:
        """Create a repo at `path` (the directory may exist, but not a repo in it)."""
        path = Path(path).expanduser()
        if quota is not None and (type(quota) is not int or quota < 0):
            raise RepoError(f"quota must be a non-negative number of bytes or None, not {quota!r}")
        if (path / CONFIG_FILE).exists():
            raise RepoError(f"{path} is already a chorus repo; refusing to initialise it again")
        if path.exists() and not path.is_dir():
            raise RepoError(f"{path} exists and is not a directory")
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise RepoError(f"cannot create the repo directory {path}: {exc}") from None
        lock = _RepoLock.acquire(path)
        try:
            if (path / CONFIG_FILE).exists():  # another init won the race
                raise RepoError(f"{path} is already a chorus repo; refusing to initialise it again")
            identity = create_identity(path)
            api_token = create_api_token(path)
            blockstore = Blockstore(path / BLOCKSTORE_FILE, quota=quota, create=True)
            try:
                ledger = _open_ledger(path, identity)
            except BaseException:
                blockstore.close()
                raise
            config = RepoConfig(quota=quota)
            try:
                write_atomically(path / CONFIG_FILE, config.to_json())
            except BaseException:
                blockstore.close()
                ledger.close()
                raise
        except BaseException:
            lock.release()
            raise
        return cls(path, config, lock, blockstore, identity, api_token, ledger)

    @classmethod
    def open(cls, path: Path | str) -> Repo:
        """Open the repo at `path`; RepoError says what is wrong if it cannot be used."""
        path = Path(path).expanduser()
        if not path.exists():
            raise RepoError(f"no chorus repo at {path} (run `chorus init` first)")
        if not path.is_dir():
            raise RepoError(f"{path} is not a directory, so not a chorus repo")
        config_path = path / CONFIG_FILE
        if not config_path.exists():
            raise RepoError(
                f"{path} is not an initialised chorus repo (no {CONFIG_FILE}); run `chorus init`"
            )
        lock = _RepoLock.acquire(path)
        try:
            try:
                raw = config_path.read_bytes()
            except OSError as exc:
                raise RepoError(f"cannot read {config_path}: {exc}") from None
            config = RepoConfig.from_json(raw, config_path)
            remote = _kubo_blockstore(config, config_path)
            store_path = path / BLOCKSTORE_FILE
            if remote is None and not store_path.is_file():
                raise RepoError(f"{path} has a config but no {BLOCKSTORE_FILE}: the repo is broken")
            identity = load_identity(path)
            api_token = load_api_token(path)
            blockstore = remote or Blockstore(store_path, quota=config.quota, create=False)
            try:
                ledger = _open_ledger(path, identity)
            except BaseException:
                blockstore.close()
                raise
        except BaseException:
            lock.release()
            raise
        return cls(path, config, lock, blockstore, identity, api_token, ledger)

    def close(self) -> None:
        """Close the stores, then release the lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                self.blockstore.close()
            finally:
                self.ledger.close()
        finally:
            self._lock.release()

    def __enter__(self) -> Repo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Repo({str(self.path)!r})"


def _open_ledger(path: Path, identity: SigningKey) -> LedgerStore:
    """The ledger file (created on first use, so repos from before it gain one)."""
    return LedgerStore(path / LEDGER_FILE, owner=bytes(identity.verify_key))


def _kubo_blockstore(config: RepoConfig, source: Path) -> Any:
    """The remote store config.json's `"blockstore": {"kind": "kubo", "api": ...}` asks
    for (node/kubo_blockstore.py), or None for the embedded one (the default)."""
    spec = config.extra.get("blockstore")
    if spec is None:
        return None
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind not in ("embedded", "kubo"):
        raise RepoError(
            f'{source}: "blockstore" must be {{"kind": "embedded"}} or '
            f'{{"kind": "kubo", "api": "http://127.0.0.1:5001"}}, not {spec!r}'
        )
    if kind == "embedded":
        return None
    from .kubo_blockstore import KuboBlockstore  # imports ipfshttpclient: only when used

    return KuboBlockstore.from_config(spec, source=source)


class _RepoLock:
    """An exclusive advisory lock on <repo>/repo.lock, released on close or process exit.

    flock (POSIX) / msvcrt.locking (Windows) are held by the open file, so a crashed
    process never leaves a stale lock behind. The file records the holder's pid, for
    the error message another process shows.
    """

    def __init__(self, path: Path, handle: IO[bytes]) -> None:
        self.path = path
        self._handle = handle

    @classmethod
    def acquire(cls, repo: Path) -> _RepoLock:
        path = repo / LOCK_FILE
        try:
            handle = open(path, "a+b")  # noqa: SIM115 - held open for the repo's lifetime
        except OSError as exc:
            raise RepoError(f"cannot open the repo lock {path}: {exc}") from None
        try:
            _lock_file(handle)
        except OSError:
            handle.seek(0)
            holder = handle.read(32).decode("ascii", "replace").strip() or "unknown"
            handle.close()
            if holder == str(os.getpid()):
                raise RepoError(f"repo {repo} is already open in this process") from None
            raise RepoError(
                f"repo {repo} is locked by another chorus process (pid {holder}); "
                "stop it, or go through its API"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n".encode("ascii"))
        handle.flush()
        return cls(path, handle)

    def release(self) -> None:
        if self._handle.closed:
            return
        try:
            self._handle.seek(0)
            self._handle.truncate()
        finally:
            self._handle.close()  # closing the file drops the lock


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_file(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _lock_file(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
