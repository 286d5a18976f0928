"""The node's persistent Ed25519 identity: one key for libp2p and for signing.

`chorus init` writes a 32-byte Ed25519 seed to `<repo>/identity.key` (mode 0600);
every daemon start loads it, so the peer ID survives restarts. The libp2p peer ID
embeds the public key, so an entry signed with this key can be tied to the node by
anyone who knows its peer ID. Keys written by go/rust libp2p hold 64 bytes
(seed + public key); only the seed is kept, and the public half is checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from nacl.signing import SigningKey

from .atomic_file import write_atomically
from .errors import RepoError

__all__ = ["IDENTITY_FILE", "create_identity", "load_identity", "peer_id_of"]

IDENTITY_FILE = "identity.key"


def create_identity(repo_path: Path) -> SigningKey:
    """Generate and store a new node key; refuses to replace an existing one."""
    path = repo_path / IDENTITY_FILE
    if path.exists():
        raise RepoError(f"{path} already exists; refusing to replace the node's identity")
    key = SigningKey.generate()
    write_atomically(path, bytes(key))
    os.chmod(path, 0o600)
    return key


def load_identity(repo_path: Path) -> SigningKey:
    """Read the node key; RepoError names the file if it is missing or malformed."""
    path = repo_path / IDENTITY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RepoError(f"{path} is missing: this repo has no node identity") from None
    except OSError as exc:
        raise RepoError(f"cannot read {path}: {exc}") from None
    if len(raw) == 64:
        key = SigningKey(raw[:32])
        if bytes(key.verify_key) != raw[32:]:
            raise RepoError(f"{path}: the public half does not match the seed")
        return key
    if len(raw) != 32:
        raise RepoError(f"{path} holds {len(raw)} bytes; an Ed25519 seed is 32")
    return SigningKey(raw)


def peer_id_of(key: SigningKey) -> str:
    """The libp2p peer ID (base58 identity multihash of the protobuf public key)."""
    from libp2p.peer.id import ID

    from .host import keypair_of  # libp2p is heavy to import; only when asked

    return str(ID.from_pubkey(keypair_of(key).public_key))
