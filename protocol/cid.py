"""CIDs as IPFS writes them, built on the `multiformats` package.

Two codecs matter for content (dag-pb for UnixFS nodes, raw for leaves) and one hash
(sha2-256, what Kubo uses by default). Every block chorus stores or serves goes
through `verify_block` first: a CID is a promise about bytes and this keeps it.
"""

from __future__ import annotations

import base64
import hashlib

from multiformats import CID, multibase, multicodec, multihash

from .errors import BlockMismatch, BlockTooLarge, InvalidCID, UnsupportedHash

__all__ = [
    "CID",
    "DAG_PB",
    "MAX_BLOCK_SIZE",
    "RAW",
    "SHA2_256",
    "cid_from_bytes",
    "cid_from_digest",
    "cid_from_multihash",
    "cid_to_text",
    "make_cid",
    "parse_cid",
    "verify_block",
]

DAG_PB = 0x70
RAW = 0x55
SHA2_256 = 0x12
#: Blocks larger than this are refused everywhere (the limit Bitswap peers share).
MAX_BLOCK_SIZE = 2 * 1024 * 1024

_CODEC_NAMES = {DAG_PB: "dag-pb", RAW: "raw"}
_SHA2_256_PREFIX = bytes([SHA2_256, 32])
# CID() re-validates every argument through typing-validation (~0.4 ms a call, a
# fifth of the importer's time); the importer's arguments are known-good, so it uses
# the package's own instance constructor with these resolved once. A test checks it
# equals the public constructor's result.
_FAST = {
    "base58btc": multibase.get("base58btc"),
    "base32": multibase.get("base32"),
    DAG_PB: multicodec.get(code=DAG_PB),
    RAW: multicodec.get(code=RAW),
    SHA2_256: multihash.get(code=SHA2_256),
}


def parse_cid(value: str | bytes | CID) -> CID:
    """Turn CID text (base58btc v0, any multibase v1) or binary CID bytes into a CID.

    Raises `InvalidCID` naming the input for anything else: the multiformats
    package raises a zoo of KeyError/ValueError subclasses we do not leak.
    """
    if isinstance(value, CID):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidCID("empty string is not a CID")
        if len(text) > 512:
            raise InvalidCID(f"CID text is {len(text)} characters long; refusing")
    elif isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value)
        if not text:
            raise InvalidCID("empty bytes are not a CID")
    else:
        raise InvalidCID(f"a CID is text or bytes, not {type(value).__name__}")
    try:
        cid = CID.decode(text)
    except Exception as exc:  # noqa: BLE001 - multiformats raises many unrelated types
        shown = text if isinstance(text, str) else text[:40].hex()
        raise InvalidCID(f"not a valid CID: {shown!r} ({exc})") from None
    if cid.version == 0 and cid.hashfun.code != SHA2_256:
        raise InvalidCID(f"CIDv0 must use sha2-256: {text!r}")
    return cid


def cid_from_bytes(raw: bytes) -> CID:
    """Decode binary CID bytes, fast for the sha2-256 dag-pb/raw CIDs content uses.

    DAG walks decode one CID per link; the generic decoder costs ~0.3 ms each,
    so the forms IPFS content actually uses are built directly. Anything else goes
    through multiformats and its full checks; failures are `InvalidCID`.
    """
    raw = bytes(raw)
    if len(raw) == 34 and raw[:2] == _SHA2_256_PREFIX:
        return cid_from_digest(raw[2:], version=0, codec=DAG_PB)
    if len(raw) == 36 and raw[0] == 1 and raw[1] in _CODEC_NAMES and raw[2:4] == _SHA2_256_PREFIX:
        return cid_from_digest(raw[4:], version=1, codec=raw[1])
    return parse_cid(raw)


def cid_from_multihash(mh: bytes, *, codec: int = RAW) -> CID:
    """The CIDv1 of a multihash (how a multihash-keyed store names its blocks)."""
    mh = bytes(mh)
    if len(mh) == 34 and mh[:2] == _SHA2_256_PREFIX and codec in _CODEC_NAMES:
        return cid_from_digest(mh[2:], version=1, codec=codec)
    try:
        return CID("base32", 1, codec, mh)
    except Exception as exc:  # noqa: BLE001 - multiformats raises many types
        raise InvalidCID(f"not a multihash: {mh[:40].hex()} ({exc})") from None


def make_cid(data: bytes, *, version: int = 1, codec: int = RAW) -> CID:
    """The sha2-256 CID of `data` (v0 implies dag-pb, as in IPFS)."""
    digest = hashlib.sha256(data).digest()
    return cid_from_digest(digest, version=version, codec=codec)


def cid_from_digest(digest: bytes, *, version: int, codec: int) -> CID:
    """A CID around an already-computed sha2-256 digest (the importer hashes once)."""
    if len(digest) != 32:
        raise InvalidCID(f"a sha2-256 digest is 32 bytes, not {len(digest)}")
    if version == 0:
        if codec != DAG_PB:
            raise InvalidCID("CIDv0 can only name dag-pb blocks")
        base = _FAST["base58btc"]
    elif version == 1:
        if codec not in _CODEC_NAMES:
            raise InvalidCID(f"unsupported content codec 0x{codec:x}")
        base = _FAST["base32"]
    else:
        raise InvalidCID(f"unknown CID version {version}")
    return CID._new_instance(  # private fast path, see _FAST
        CID, base, version, _FAST[codec], _FAST[SHA2_256], _SHA2_256_PREFIX + digest
    )


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def cid_to_text(cid: CID) -> str:
    """The form IPFS prints: base58btc for v0, base32 (lowercase, "b" prefix) for v1.

    Written out here because multiformats' own encoder re-validates its input
    (~0.3 ms a CID), which dominated listing pins and answering wantlists; a test
    checks it equals `str(cid)` / `cid.encode("base32")`.
    """
    raw = bytes(cid)
    if cid.version == 0:
        number = int.from_bytes(raw, "big")
        digits = []
        while number:
            number, rest = divmod(number, 58)
            digits.append(_B58[rest])
        zeros = len(raw) - len(raw.lstrip(b"\0"))
        return "1" * zeros + "".join(reversed(digits))
    return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def verify_block(cid: CID, data: bytes) -> None:
    """Refuse `data` unless it is small enough and hashes to `cid`."""
    if len(data) > MAX_BLOCK_SIZE:
        raise BlockTooLarge(
            f"block {cid} is {len(data)} bytes; the limit is {MAX_BLOCK_SIZE}"
        )
    code = cid.hashfun.code
    # Compare whole multihashes: `cid.raw_digest` re-parses the multihash with
    # typing validation (~0.7 ms), more than hashing a 256 KiB block costs.
    if code == SHA2_256:
        actual = _SHA2_256_PREFIX + hashlib.sha256(data).digest()
    else:
        try:
            actual = multihash.digest(data, cid.hashfun.name)
        except Exception:  # noqa: BLE001 - any failure means we cannot check it
            raise UnsupportedHash(f"cannot verify {cid}: hash {cid.hashfun.name}") from None
    if actual != cid.digest:
        raise BlockMismatch(f"block bytes do not hash to {cid}")
