"""The co-op's entry kinds: memberships, releases, money, plays, receipts and votes.

Why here and this strict: the tallies (ledger/tally.py) are pure functions of the
genesis and the set of valid entries, so everything that can be decided from a body
alone is decided when the entry is accepted, the same way on every node: types and
ranges, a release's splits summing to exactly 10000 bps, CIDs that parse. What
depends on other entries (is the author on the board, a member, the wallet's owner?)
is the tally's, which reports such entries as anomalies and never counts them.

CIDs in bodies are text, and must be the one text Kubo and chorus print for that CID
(base58btc for v0, lowercase base32 for v1; `protocol.cid.cid_to_text`): tallies
compare a play's ``track`` and a receipt's ``roots`` with a release's track CIDs as
strings, so two spellings of one CID would make a paid play of a release "unknown".
The check is `protocol.cid.is_canonical_cid_text` (a few µs for the sha2-256 forms
chorus writes, against ~0.3 ms through multiformats); a refused CID is parsed again
to say why.

The table (docs/economics.md "Entry kinds") is registered in ledger/kinds.py. This
module imports only ledger/schema.py and protocol/, so kinds.py can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.cid import cid_to_text, is_canonical_cid_text, parse_cid
from protocol.errors import InvalidCID

from .schema import Bytes, EntryId, Field, Int, ListOf, MapOf, Schema, SchemaError, Str

__all__ = [
    "BALLOT",
    "CLASSES",
    "ECON_KINDS",
    "KEY",
    "MAX_AMOUNT",
    "MEMBER_ADMIT",
    "MEMBER_LEAVE",
    "PEER_ID",
    "PLAY",
    "PROPOSAL",
    "RECEIPT",
    "RELEASE",
    "TOPUP",
    "TOTAL_BPS",
    "TRANSFER",
    "CidText",
]

#: Member classes, as ``member.admit`` and ``proposal`` name them.
CLASSES: tuple[str, ...] = ("worker", "artist", "listener")
#: Largest single top-up or transfer, in µc (a billion credits): far above any real
#: amount, far below where a sum of many could leave int64.
MAX_AMOUNT = 10**15
#: A release's payee shares must add up to exactly this many basis points.
TOTAL_BPS = 10000
#: Longest CID text accepted (a sha2-256 CIDv1 in base32 is 59 characters).
MAX_CID_LENGTH = 128


@dataclass(frozen=True)
class CidText(Field):
    """A CID as text, in its one canonical spelling (see the module docstring)."""

    def check(self, value: Any, path: str) -> None:
        if type(value) is not str:
            raise SchemaError(f"{path} must be CID text, got {type(value).__name__}")
        if not 1 <= len(value) <= MAX_CID_LENGTH:
            raise SchemaError(
                f"{path} has {len(value)} characters; a CID here is 1..{MAX_CID_LENGTH}"
            )
        if is_canonical_cid_text(value):  # the common case, without multiformats
            return
        # Refused: parse again to say why (not a CID, or which spelling it should be).
        try:
            canonical = cid_to_text(parse_cid(value))
        except InvalidCID as exc:
            raise SchemaError(f"{path} is not a CID: {exc}") from None
        if canonical != value:
            raise SchemaError(
                f"{path} = {value!r} is not written as chorus and Kubo print it: {canonical!r}"
            )


#: An Ed25519 public key (member, wallet, payee).
KEY = Bytes(size=32)
#: A libp2p peer id as text (hosts); its form is the host's business, only its length
#: is bounded (it is compared as a string by the tally).
PEER_ID = Str(min_length=1, max_length=128)
_CLASS = Str(choices=frozenset(CLASSES))
_AMOUNT = Int(1, MAX_AMOUNT)
_TITLE = Str(min_length=1, max_length=256)


# --- membership -----------------------------------------------------------------------

#: A board key admits `member` in `class`. (Whether the author is on the board is the
#: tally's question.)
MEMBER_ADMIT = Schema(
    "member.admit",
    {"member": KEY, "class": _CLASS},
    doc="a board key admits a member in a class",
)

#: A board key removes `member`, or the member leaves.
MEMBER_LEAVE = Schema(
    "member.leave",
    {"member": KEY},
    doc="a board key removes a member, or the member leaves",
)


# --- releases -------------------------------------------------------------------------

_TRACK = MapOf(
    {
        "cid": CidText(),
        "title": _TITLE,
        "duration_ms": Int(1),
        "size": Int(0),
        "mime": Str(min_length=1, max_length=64),
    }
)
_PAYEE = MapOf({"key": KEY, "bps": Int(1, TOTAL_BPS)})


def _release_rule(body: dict[str, Any]) -> None:
    """Payees: unique keys whose bps add up to exactly 10000 (so the split of every
    paid play is fully assigned); tracks: each CID once (a play names a track by CID)."""
    keys = [payee["key"] for payee in body["payees"]]
    if len(set(keys)) != len(keys):
        raise SchemaError("body.payees names one key twice")
    total = sum(payee["bps"] for payee in body["payees"])
    if total != TOTAL_BPS:
        raise SchemaError(f"body.payees bps add up to {total}, not {TOTAL_BPS}")
    cids = [track["cid"] for track in body["tracks"]]
    if len(set(cids)) != len(cids):
        raise SchemaError("body.tracks lists one CID twice")


#: An artist publishes tracks and says who is paid for their plays.
RELEASE = Schema(
    "release",
    {
        "title": _TITLE,
        "tracks": ListOf(_TRACK, min_items=1, max_items=100),
        "payees": ListOf(_PAYEE, min_items=1, max_items=32),
    },
    rule=_release_rule,
    doc="a release: tracks and payees (bps summing to 10000)",
)


# --- money ----------------------------------------------------------------------------

#: A treasury key credits `amount` µc to `wallet`.
TOPUP = Schema(
    "topup",
    {"wallet": KEY, "amount": _AMOUNT},
    doc="a treasury key credits a wallet",
)

#: A wallet moves `amount` µc to another key (listener key rotation). ``to`` differs
#: from the author: schemas see only the body, so that is the tally's to enforce.
TRANSFER = Schema(
    "transfer",
    {"to": KEY, "amount": _AMOUNT},
    doc="a wallet moves credit to another key",
)


# --- plays and hosting ----------------------------------------------------------------

#: A listener played `track` of the release entry `release` for `played_ms`, fetched
#: from `hosts`.
PLAY = Schema(
    "play",
    {
        "track": CidText(),
        "release": EntryId(),
        "played_ms": Int(0),
        "hosts": ListOf(PEER_ID, max_items=16),
    },
    doc="a listener's play of a track",
)

#: A downloader acknowledges `bytes` (cumulative) of verified blocks under `roots`
#: received from `host` in `epoch`.
RECEIPT = Schema(
    "receipt",
    {
        "host": PEER_ID,
        "epoch": Int(0),
        "bytes": Int(0),
        "roots": ListOf(CidText(), min_items=1, max_items=64),
    },
    doc="cumulative bandwidth receipt for a host in an epoch",
)


# --- votes ----------------------------------------------------------------------------


def _proposal_rule(body: dict[str, Any]) -> None:
    """A vote needs a non-empty window: ballots count for opens <= time < closes."""
    if body["closes"] <= body["opens"]:
        raise SchemaError(
            f"body.closes = {body['closes']} must be after body.opens = {body['opens']}"
        )


#: A member asks the members of `classes` to choose one of `options`.
PROPOSAL = Schema(
    "proposal",
    {
        "title": _TITLE,
        "text": Str(max_length=4096),
        "options": ListOf(Str(min_length=1, max_length=128), min_items=2, max_items=16,
                          unique=True),
        "opens": Int(0),
        "closes": Int(0),
        "classes": ListOf(_CLASS, min_items=1, max_items=len(CLASSES), unique=True),
    },
    rule=_proposal_rule,
    doc="a proposal put to a vote",
)

#: A member's choice: index `option` of the proposal entry `proposal`.
BALLOT = Schema(
    "ballot",
    {"proposal": EntryId(), "option": Int(0)},
    doc="a member's ballot on a proposal",
)

ECON_KINDS: tuple[Schema, ...] = (
    MEMBER_ADMIT,
    MEMBER_LEAVE,
    RELEASE,
    TOPUP,
    TRANSFER,
    PLAY,
    RECEIPT,
    PROPOSAL,
    BALLOT,
)
