"""CIDs as IPFS writes them, built on the `multiformats` package.

Two codecs matter for content (dag-pb for UnixFS nodes, raw for leaves) and one hash
(sha2-256, what Kubo uses by default). Every block chorus stores or serves goes
through `verify_block` first: a CID is a promise about bytes and this keeps it.
"""

from __future__ import annotations

import base64
import hashlib
import re

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
    "is_canonical_cid_text",
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


_B58_INDEX = {char: index for index, char in enumerate(_B58)}
_V0_PREFIX = int.from_bytes(_SHA2_256_PREFIX, "big")  # 0x1220: the top 2 of 34 bytes
#: One-byte codecs a CIDv1 may carry: those multiformats' table knows (what
#: `parse_cid` accepts), read once; a test checks every code 0x00..0x7f against it.
_V1_CODECS = frozenset(codec.code for codec in multicodec.table() if codec.code < 0x80)
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648, lower case
_BASE32_58 = re.compile(f"[{_BASE32}]{{58}}")
# RFC 4648 digits -> the digits int(..., 32) reads (0-9a-v), so C does the decoding.
_BASE32_TO_INT = str.maketrans(_BASE32, "0123456789abcdefghijklmnopqrstuv")


def is_canonical_cid_text(text: str) -> bool:
    """Whether `text` parses as a CID and is exactly how `cid_to_text` prints it.

    The same answer as ``cid_to_text(parse_cid(text)) == text`` (False where that
    raises `InvalidCID`), which is how ledger bodies' CID text is checked, but ~50x
    faster for the two forms chorus writes; a property test compares the two on
    random CIDs and mutations of them. `parse_cid` runs multiformats' typing
    validation (~0.3 ms a CID), which dominated accepting and tallying entries.

    Fast forms, answered without multiformats:
      * CIDv0: 46 base58btc characters starting "Qm" whose number is 0x12 0x20 +
        32 bytes. Base58 text without leading "1"s is the one spelling of its number,
        and 34 bytes starting 0x12 have no leading zero byte, so such text is exactly
        what `cid_to_text` prints for that CID.
      * CIDv1: "b" + 58 lowercase base32 digits (no padding) of 0x01, a one-byte
        codec multiformats knows, 0x12 0x20, 32 bytes, then 2 zero bits. Fixed-width
        base32 over exactly that alphabet is one spelling per number, and it is how
        `cid_to_text` prints those 36 bytes; upper case, padding, stray trailing bits
        and anything outside the alphabet take the slow path (and fail there).
    Anything else (other hashes, other bases, junk, non-canonical spellings) goes
    through `parse_cid` and `cid_to_text`, so False answers cost the full parse.
    Non-str input is False.
    """
    if type(text) is not str:
        return False
    length = len(text)
    if length == 46 and text.startswith("Qm"):
        number = 0
        try:
            for char in text:
                number = number * 58 + _B58_INDEX[char]
        except KeyError:
            pass
        else:
            if number >> 256 == _V0_PREFIX:
                return True
    elif length == 59 and text[0] == "b" and _BASE32_58.fullmatch(text, 1):
        # 58 base32 digits are 290 bits: the 36 bytes then 2 bits that must be 0.
        number = int(text[1:].translate(_BASE32_TO_INT), 32)
        if not number & 3:
            raw = (number >> 2).to_bytes(36, "big")
            if raw[0] == 1 and raw[1] in _V1_CODECS and raw[2:4] == _SHA2_256_PREFIX:
                return True
    try:
        return cid_to_text(parse_cid(text)) == text
    except InvalidCID:
        return False


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
