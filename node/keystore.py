"""Named Ed25519 keys a member signs with, kept beside the node's own identity key.

A member may sign releases, votes or receipts with a key of their own rather than
with the node's identity (which a host operator holds and may have to rotate), or may
simply use the node's key; so, as in Kubo's `ipfs key gen/list`, keys have names and
the name "self" always means the node identity (`<repo>/identity.key`,
node/identity.py). Every other key is one file:

    <repo>/keys/         mode 0700
        NAME.key         the raw 32-byte Ed25519 seed, mode 0600

Names are `[a-z0-9][a-z0-9_.-]{0,63}`: they become file names, so the rule keeps out
path separators, "..", hidden files and names that differ only in case (which are
the same file on macOS and Windows). The keystore reads and writes these files
directly and never takes the repo lock, so keys can be made and listed while a
daemon runs. A new key is written under a temporary name and then hard-linked to
its own, which fails if the name exists: two concurrent `key new alice` cannot
overwrite each other's secret.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from .atomic_file import write_atomically
from .errors import RepoError
from .identity import IDENTITY_FILE, load_identity

__all__ = [
    "KEYS_DIR",
    "KEY_NAME_RULE",
    "SELF",
    "InvalidKeyName",
    "KeyExists",
    "KeyFileError",
    "KeyInfo",
    "KeyNotFound",
    "Keystore",
    "KeystoreError",
    "check_key_name",
]

KEYS_DIR = "keys"
#: The reserved name of the node's identity key; never stored under keys/.
SELF = "self"
#: What a key name must match, as shown in error messages.
KEY_NAME_RULE = "[a-z0-9][a-z0-9_.-]{0,63}"
_KEY_NAME = re.compile(KEY_NAME_RULE)
_SUFFIX = ".key"
_SEED_SIZE = 32
# The config file whose presence means "initialised" (node/repo.py's CONFIG_FILE;
# not imported from there, because node.repo pulls in the blockstore).
_CONFIG_FILE = "config.json"


class KeystoreError(RepoError):
    """Base of the keystore's errors; a RepoError, so the CLI reports it like one."""


class InvalidKeyName(KeystoreError, ValueError):
    """A key name that does not follow `KEY_NAME_RULE`; `name` is the refused text."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"invalid key name {name!r}: a name must match {KEY_NAME_RULE} "
            "(1-64 characters: lowercase letters, digits, '_', '.', '-'; "
            "starting with a letter or digit)"
        )


class KeyExists(KeystoreError):
    """`new` asked for a name that is taken (or is "self"); nothing was written."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        if name == SELF:
            message = (
                f"key {SELF!r} is the node's identity ({path}); it is made by `chorus init` "
                "and cannot be created again"
            )
        else:
            message = f"key {name!r} already exists ({path}); refusing to replace it"
        super().__init__(message)


class KeyNotFound(KeystoreError, KeyError):
    """No key of that name. Also a `KeyError`, like `node.errors.BlockNotFound`."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        super().__init__(name)

    def __str__(self) -> str:
        # KeyError's own __str__ would print the repr of the first argument.
        return f"no key named {self.name!r} in {self.directory}"


class KeyFileError(KeystoreError):
    """A key file that cannot be read or does not hold a 32-byte seed; `path` names it."""

    def __init__(self, message: str, path: Path) -> None:
        self.path = path
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key's name and public half: what can be shown without exposing the seed."""

    name: str
    public_key: bytes

    @property
    def public_hex(self) -> str:
        """The 32-byte public key as 64 lowercase hex digits."""
        return self.public_key.hex()


def check_key_name(name: str) -> str:
    """Return `name` if it follows `KEY_NAME_RULE`, else raise InvalidKeyName."""
    if not isinstance(name, str) or _KEY_NAME.fullmatch(name) is None:
        raise InvalidKeyName(name)
    return name


class Keystore:
    """The named keys of the repo at `repo_path` (which must be initialised).

    Holds no open files and no lock: each call reads or writes the files it needs.
    """

    def __init__(self, repo_path: Path | str) -> None:
        path = Path(repo_path).expanduser()
        if not path.is_dir():
            raise RepoError(f"no chorus repo at {path} (run `chorus init` first)")
        if not (path / _CONFIG_FILE).exists():
            raise RepoError(
                f"{path} is not an initialised chorus repo (no {_CONFIG_FILE}); run `chorus init`"
            )
        self.repo_path = path
        self.directory = path / KEYS_DIR

    def path_of(self, name: str) -> Path:
        """The file that holds (or would hold) key `name`; "self" is the identity file."""
        check_key_name(name)
        if name == SELF:
            return self.repo_path / IDENTITY_FILE
        return self.directory / f"{name}{_SUFFIX}"

    def new(self, name: str) -> KeyInfo:
        """Generate and store a key under `name`; KeyExists if the name is taken."""
        path = self.path_of(name)
        if name == SELF or path.exists():
            raise KeyExists(name, path)
        self._make_directory()
        key = SigningKey.generate()
        staging = self.directory / f".{name}.{secrets.token_hex(8)}.new"
        try:
            write_atomically(staging, bytes(key))
            os.chmod(staging, 0o600)
            try:
                os.link(staging, path)  # unlike a rename, refuses to replace `path`
            except FileExistsError:
                raise KeyExists(name, path) from None
        finally:
            staging.unlink(missing_ok=True)
        _fsync_directory(self.directory)
        return KeyInfo(name, bytes(key.verify_key))

    def get(self, name: str) -> SigningKey:
        """The signing key named `name` ("self": the node identity)."""
        path = self.path_of(name)
        if name == SELF:
            return load_identity(self.repo_path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise KeyNotFound(name, self.directory) from None
        except OSError as exc:
            raise KeyFileError(f"cannot read key {name!r} from {path}: {exc}", path) from None
        if len(raw) != _SEED_SIZE:
            raise KeyFileError(
                f"{path} holds {len(raw)} bytes; a key file holds a {_SEED_SIZE}-byte Ed25519 seed",
                path,
            )
        return SigningKey(raw)

    def info(self, name: str) -> KeyInfo:
        """The name and public key of key `name`."""
        return KeyInfo(name, bytes(self.get(name).verify_key))

    def list(self) -> list[KeyInfo]:
        """Every key: "self" first, then the others sorted by name.

        Files under keys/ whose names are not key names (staging files of a `new`
        that was interrupted, anything put there by hand, a "self.key") are not keys
        and are left out; a key file that cannot be read raises KeyFileError.
        """
        names: list[str] = []
        if self.directory.is_dir():
            for entry in self.directory.iterdir():
                stem = entry.name[: -len(_SUFFIX)]
                if (
                    entry.name.endswith(_SUFFIX)
                    and stem != SELF
                    and _KEY_NAME.fullmatch(stem)
                    and entry.is_file()
                ):
                    names.append(stem)
        return [self.info(name) for name in [SELF, *sorted(names)]]

    def find_by_public(self, public_key: bytes) -> str | None:
        """The name of the key whose public half is `public_key` ("self" wins a tie)."""
        for info in self.list():
            if info.public_key == public_key:
                return info.name
        return None

    def _make_directory(self) -> None:
        if self.directory.is_dir():
            return
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.directory, 0o700)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise KeystoreError(
                f"cannot create the key directory {self.directory}: {exc}"
            ) from None

    def __repr__(self) -> str:
        return f"Keystore({str(self.repo_path)!r})"


def _fsync_directory(path: Path) -> None:
    """Make the new link durable before its public key is shown (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
