"""ledger/econ_kinds.py: the co-op's entry kinds, accepted through ledger/kinds.py's table.

Each kind: a valid body is accepted by `check_body` and survives `sign_entry` +
`decode_entry`; every missing or unknown field and every rule is refused with a
SchemaError naming the field.
"""

from __future__ import annotations

import copy
import itertools
from hashlib import sha256
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from ledger.econ_kinds import (
    CLASSES,
    ECON_KINDS,
    MAX_AMOUNT,
    TOTAL_BPS,
    CidText,
)
from ledger.entry import decode_entry, sign_entry
from ledger.kinds import KINDS, check_body
from ledger.schema import SchemaError, UnknownKind
from protocol.cid import DAG_PB, make_cid

KEY = SigningKey(bytes(range(32)))
T0 = 1_700_000_000_000
A, B, C = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32
ENTRY_ID = bytes([0x01, 0x55, 0x12, 0x20]) + sha256(b"an entry").digest()
CID_V1 = str(make_cid(b"track one"))
CID_V1_B = str(make_cid(b"track two"))
CID_V0 = str(make_cid(b"track three", version=0, codec=DAG_PB))
PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def track(cid: str = CID_V1, **changes: Any) -> dict[str, Any]:
    return {"cid": cid, "title": "Song", "duration_ms": 180_000, "size": 4_000_000,
            "mime": "audio/ogg", **changes}


def payee(key: bytes, bps: int) -> dict[str, Any]:
    return {"key": key, "bps": bps}


VALID: dict[str, dict[str, Any]] = {
    "member.admit": {"member": A, "class": "artist"},
    "member.leave": {"member": A},
    "release": {
        "title": "First album",
        "tracks": [track(CID_V1), track(CID_V0, title="Other", size=0, mime="audio/flac")],
        "payees": [payee(A, 6000), payee(B, 4000)],
    },
    "topup": {"wallet": A, "amount": 5_000_000},
    "transfer": {"to": B, "amount": 1},
    "play": {"track": CID_V1, "release": ENTRY_ID, "played_ms": 45_000, "hosts": [PEER]},
    "receipt": {"host": PEER, "epoch": 2810, "bytes": 1 << 40, "roots": [CID_V1, CID_V0]},
    "proposal": {"title": "Raise the price?", "text": "", "options": ["yes", "no"],
                 "opens": T0, "closes": T0 + 1, "classes": ["worker", "artist"]},
    "ballot": {"proposal": ENTRY_ID, "option": 0},
}


def body(kind: str, **changes: Any) -> dict[str, Any]:
    value = copy.deepcopy(VALID[kind])
    value.update(changes)
    return value


def refused(kind: str, value: dict[str, Any], match: str) -> SchemaError:
    with pytest.raises(SchemaError, match=match) as caught:
        check_body(kind, value)
    assert not isinstance(caught.value, UnknownKind)
    return caught.value


# --- the table ------------------------------------------------------------------------


def test_every_economic_kind_is_registered() -> None:
    names = [schema.kind for schema in ECON_KINDS]
    assert names == list(VALID)
    assert set(KINDS) == {"note", "tree_head", *names}
    for schema in ECON_KINDS:
        assert KINDS[schema.kind] is schema


@pytest.mark.parametrize("kind", list(VALID))
def test_valid_body_is_accepted(kind: str) -> None:
    check_body(kind, VALID[kind])


@pytest.mark.parametrize("kind", list(VALID))
def test_sign_and_decode_round_trip(kind: str) -> None:
    entry = sign_entry(KEY, 1, None, T0, kind, VALID[kind])
    again = decode_entry(entry.encoded)
    assert again == entry and again.kind == kind and again.body == VALID[kind]
    check_body(again.kind, again.body)


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k in VALID for n in VALID[k]])
def test_every_field_is_required(kind: str, name: str) -> None:
    value = body(kind)
    del value[name]
    refused(kind, value, f"body is missing {name}")


@pytest.mark.parametrize("kind", list(VALID))
def test_unknown_fields_are_refused(kind: str) -> None:
    refused(kind, body(kind, extra=1), "unknown fields 'extra'")


# --- membership -----------------------------------------------------------------------


def test_member_admit() -> None:
    for name in CLASSES:
        check_body("member.admit", body("member.admit", **{"class": name}))
    for name in ("supporter", "Worker", "", "board"):
        refused("member.admit", body("member.admit", **{"class": name}), r"body\.class")
    refused("member.admit", body("member.admit", member=A[:31]), r"body\.member must be 32")
    refused("member.admit", body("member.admit", member=A.hex()), r"body\.member must be bytes")


def test_member_leave() -> None:
    refused("member.leave", body("member.leave", member=A + b"\x00"), "must be 32 bytes")


# --- releases -------------------------------------------------------------------------


def release(tracks: list[dict[str, Any]] | None = None,
            payees: list[dict[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    value = body("release", **changes)
    if tracks is not None:
        value["tracks"] = tracks
    if payees is not None:
        value["payees"] = payees
    return value


def keys(count: int) -> list[bytes]:
    return [i.to_bytes(32, "big") for i in range(count)]


def test_awkward_splits_that_add_up_are_accepted() -> None:
    check_body("release", release(payees=[payee(A, 10000)]))
    check_body("release", release(payees=[payee(A, 3333), payee(B, 3333), payee(C, 3334)]))
    check_body("release", release(payees=[payee(A, 1), payee(B, 9999)]))
    many = [payee(key, 312) for key in keys(31)] + [payee(b"\xff" * 32, 328)]
    check_body("release", release(payees=many))  # 32 payees, the most allowed


@pytest.mark.parametrize(("bps", "total"), [
    ([3333, 3333, 3333], 9999), ([5000, 5001], 10001), ([9999], 9999), ([1, 1], 2),
    ([5000, 4000], 9000),
])
def test_splits_that_do_not_add_up_are_refused(bps: list[int], total: int) -> None:
    payees = [payee(key, share) for key, share in zip(keys(len(bps)), bps, strict=True)]
    refused("release", release(payees=payees), f"bps add up to {total}, not 10000")


def test_payee_rules() -> None:
    refused("release", release(payees=[payee(A, 5000), payee(A, 5000)]), "one key twice")
    refused("release", release(payees=[payee(A, 0), payee(B, 10000)]),
            r"body\.payees\[0\]\.bps = 0 is outside 1\.\.10000")
    refused("release", release(payees=[payee(A, 10001)]), r"payees\[0\]\.bps")
    refused("release", release(payees=[payee(A, -1), payee(B, 10001)]), r"payees\[0\]\.bps")
    refused("release", release(payees=[]), r"body\.payees has 0 items; allowed 1\.\.32")
    over = [payee(key, 1) for key in keys(32)] + [payee(b"\xff" * 32, 10000 - 32)]
    refused("release", release(payees=over), "33 items")
    refused("release", release(payees=[payee(A[:31], 10000)]), r"payees\[0\]\.key")
    refused("release", release(payees=[{"key": A}]), r"payees\[0\] is missing bps")
    refused("release", release(payees=[{**payee(A, 10000), "name": "x"}]), "unknown fields")
    refused("release", release(payees=[payee(A, True)]), "must be an integer")
    refused("release", release(payees={"key": A, "bps": 10000}), "must be a list")


def test_track_rules() -> None:
    refused("release", release(tracks=[]), r"body\.tracks has 0 items; allowed 1\.\.100")
    hundred = [track(str(make_cid(bytes([i])))) for i in range(100)]
    check_body("release", release(tracks=hundred))
    extra = str(make_cid(b"one more"))
    refused("release", release(tracks=[*hundred, track(extra)]), "101 items")
    refused("release", release(tracks=[track(CID_V1), track(CID_V1, title="Again")]),
            "one CID twice")
    for name, value, match in [
        ("title", "", r"tracks\[0\]\.title"),
        ("title", "x" * 257, r"tracks\[0\]\.title"),
        ("duration_ms", 0, r"tracks\[0\]\.duration_ms = 0"),
        ("size", -1, r"tracks\[0\]\.size = -1"),
        ("mime", "", r"tracks\[0\]\.mime"),
        ("mime", "a" * 65, r"tracks\[0\]\.mime"),
        ("cid", "bafy", r"tracks\[0\]\.cid is not a CID"),
    ]:
        refused("release", release(tracks=[track(**{name: value})]), match)
    check_body("release", release(tracks=[track(size=0, title="x" * 256, mime="a" * 64)]))
    refused("release", release(title=""), r"body\.title")
    refused("release", release(title="x" * 257), r"body\.title")


def test_a_release_splits_rule_runs_after_the_fields() -> None:
    # A payee list that is wrong in type is reported as such, not as a bad sum.
    refused("release", release(payees=[payee(A, "10000")]), "must be an integer")


# --- CID text -------------------------------------------------------------------------


@pytest.mark.parametrize("cid", [CID_V1, CID_V0, str(make_cid(b"x", codec=DAG_PB))])
def test_cid_text_accepts_the_printed_forms(cid: str) -> None:
    CidText().check(cid, "body.cid")


@pytest.mark.parametrize(("value", "match"), [
    ("", "0 characters"),
    ("x" * 129, "129 characters"),
    ("bafy", "is not a CID"),
    ("not a cid", "is not a CID"),
    (CID_V1[:-1], "is not a CID"),
    (" " + CID_V1, "not written as chorus and Kubo print it"),
    (CID_V1 + "\n", "not written as chorus and Kubo print it"),
    ("B" + CID_V1[1:].upper(), "not written as chorus and Kubo print it"),
    (make_cid(b"track one").encode("base58btc"), "not written as chorus and Kubo print it"),
    (bytes(make_cid(b"track one")), "must be CID text"),
    (None, "must be CID text"),
])
def test_cid_text_refuses(value: object, match: str) -> None:
    with pytest.raises(SchemaError, match=match) as caught:
        CidText().check(value, "body.cid")
    assert "body.cid" in str(caught.value)


def test_cids_in_plays_and_receipts_must_parse() -> None:
    refused("play", body("play", track="bafy"), r"body\.track is not a CID")
    refused("play", body("play", track=CID_V1.upper()), r"body\.track")
    refused("receipt", body("receipt", roots=[CID_V1, "Qm"]), r"body\.roots\[1\] is not a CID")


# --- money ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "field"), [("topup", "amount"), ("transfer", "amount")])
def test_amounts(kind: str, field: str) -> None:
    for amount in (1, MAX_AMOUNT):
        check_body(kind, body(kind, **{field: amount}))
    for amount in (0, -1, MAX_AMOUNT + 1):
        refused(kind, body(kind, **{field: amount}), rf"body\.{field} = {amount} is outside")
    for amount in (1.0, "1", True, None):
        refused(kind, body(kind, **{field: amount}), "must be an integer")


def test_money_keys() -> None:
    refused("topup", body("topup", wallet=A[:31]), r"body\.wallet must be 32 bytes")
    refused("transfer", body("transfer", to=b""), r"body\.to must be 32 bytes")
    refused("transfer", body("transfer", to=None), r"body\.to must be bytes")


# --- plays and receipts ---------------------------------------------------------------


def test_play() -> None:
    check_body("play", body("play", hosts=[], played_ms=0))
    check_body("play", body("play", hosts=[f"peer{i}" for i in range(16)]))
    refused("play", body("play", hosts=[f"peer{i}" for i in range(17)]), "17 items")
    refused("play", body("play", hosts=[""]), r"body\.hosts\[0\]")
    refused("play", body("play", hosts=["p" * 129]), r"body\.hosts\[0\] has 129")
    check_body("play", body("play", hosts=["p" * 128]))
    refused("play", body("play", hosts=[b"peer"]), "must be a string")
    refused("play", body("play", played_ms=-1), r"body\.played_ms = -1")
    refused("play", body("play", release=ENTRY_ID[:35]), r"body\.release must be a binary entry")
    refused("play", body("play", release=CID_V1), r"body\.release must be a binary entry")


def test_receipt() -> None:
    check_body("receipt", body("receipt", epoch=0, bytes=0, roots=[CID_V1]))
    roots = [str(make_cid(bytes([i]))) for i in range(64)]
    check_body("receipt", body("receipt", roots=roots))
    refused("receipt", body("receipt", roots=[*roots, CID_V1]), "65 items")
    refused("receipt", body("receipt", roots=[]), r"body\.roots has 0 items")
    refused("receipt", body("receipt", host=""), r"body\.host")
    refused("receipt", body("receipt", host="p" * 129), r"body\.host")
    refused("receipt", body("receipt", epoch=-1), r"body\.epoch = -1")
    refused("receipt", body("receipt", bytes=-1), r"body\.bytes = -1")


# --- votes ----------------------------------------------------------------------------


def test_proposal_window() -> None:
    check_body("proposal", body("proposal", opens=0, closes=1))
    refused("proposal", body("proposal", closes=T0), rf"body\.closes = {T0} must be after")
    refused("proposal", body("proposal", closes=T0 - 1), "must be after")
    refused("proposal", body("proposal", opens=-1), r"body\.opens = -1")


def test_proposal_options() -> None:
    sixteen = [f"option {i}" for i in range(16)]
    check_body("proposal", body("proposal", options=sixteen))
    refused("proposal", body("proposal", options=[*sixteen, "one more"]), "17 items")
    refused("proposal", body("proposal", options=["only"]), r"body\.options has 1 items")
    refused("proposal", body("proposal", options=["yes", "yes"]), "duplicate items")
    refused("proposal", body("proposal", options=["yes", ""]), r"body\.options\[1\]")
    refused("proposal", body("proposal", options=["yes", "x" * 129]), r"body\.options\[1\]")
    check_body("proposal", body("proposal", options=["yes", "x" * 128]))


def test_proposal_classes() -> None:
    check_body("proposal", body("proposal", classes=list(CLASSES)))
    check_body("proposal", body("proposal", classes=["listener"]))
    refused("proposal", body("proposal", classes=[]), r"body\.classes has 0 items")
    refused("proposal", body("proposal", classes=["artist", "artist"]), "duplicate items")
    refused("proposal", body("proposal", classes=["supporter"]), r"body\.classes\[0\]")
    refused("proposal", body("proposal", classes=[*CLASSES, "worker"]), "4 items")


def test_proposal_text_and_title() -> None:
    check_body("proposal", body("proposal", text="x" * 4096))
    refused("proposal", body("proposal", text="x" * 4097), r"body\.text")
    refused("proposal", body("proposal", title=""), r"body\.title")


def test_ballot() -> None:
    check_body("ballot", body("ballot", option=15))
    refused("ballot", body("ballot", option=-1), r"body\.option = -1")
    refused("ballot", body("ballot", proposal=b"\x00" * 36), r"body\.proposal")


# --- hypothesis -----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, TOTAL_BPS), min_size=1, max_size=32))
def test_any_split_is_accepted_iff_it_adds_up(shares: list[int]) -> None:
    payees = [payee(key, share) for key, share in zip(keys(len(shares)), shares, strict=True)]
    if sum(shares) == TOTAL_BPS:
        check_body("release", release(payees=payees))
    else:
        refused("release", release(payees=payees), "add up to")


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 32).flatmap(
    lambda n: st.lists(st.integers(0, TOTAL_BPS), min_size=n - 1, max_size=n - 1, unique=True)
))
def test_any_partition_of_10000_is_accepted(cuts: list[int]) -> None:
    points = sorted({0, TOTAL_BPS, *cuts})
    shares = [b - a for a, b in itertools.pairwise(points)]
    payees = [payee(key, share) for key, share in zip(keys(len(shares)), shares, strict=True)]
    check_body("release", release(payees=payees))
