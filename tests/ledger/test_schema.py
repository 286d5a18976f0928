"""ledger/schema.py and ledger/kinds.py: every field spec, whole-body checks, the core kinds."""

from __future__ import annotations

from hashlib import sha256

import pytest

from ledger.entry import EntryError
from ledger.kinds import KINDS, NOTE, TREE_HEAD, check_body, kind_table
from ledger.schema import (
    Bool,
    Bytes,
    EntryId,
    Int,
    ListOf,
    MapOf,
    Optional,
    Schema,
    SchemaError,
    Str,
    UnknownKind,
    check_fields,
)

ENTRY_ID = bytes([0x01, 0x55, 0x12, 0x20]) + sha256(b"an entry").digest()


def accepts(spec, value) -> None:
    spec.check(value, "body.x")


def refuses(spec, value, match: str | None = None) -> SchemaError:
    with pytest.raises(SchemaError, match=match) as caught:
        spec.check(value, "body.x")
    assert "body.x" in str(caught.value)
    return caught.value


def test_schema_error_is_an_entry_error() -> None:
    assert issubclass(SchemaError, EntryError)
    assert issubclass(UnknownKind, SchemaError)


# --- Int ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 5, (1 << 63) - 1])
def test_int_default_range_accepts(value: int) -> None:
    accepts(Int(), value)


@pytest.mark.parametrize("value", [-1, 1 << 63, -(1 << 63)])
def test_int_default_range_refuses(value: int) -> None:
    refuses(Int(), value, "outside")


@pytest.mark.parametrize("value", [True, False, 1.0, "1", b"1", None, [1]])
def test_int_refuses_other_types(value: object) -> None:
    refuses(Int(), value, "must be an integer")


def test_int_bounds_are_inclusive() -> None:
    spec = Int(-3, 7)
    for value in (-3, 0, 7):
        accepts(spec, value)
    for value in (-4, 8):
        refuses(spec, value, r"outside -3\.\.7")


# --- Str ------------------------------------------------------------------------------


def test_str_accepts_within_lengths() -> None:
    accepts(Str(), "")
    accepts(Str(), "x" * 256)
    accepts(Str(max_length=3, min_length=1), "é")  # characters, not bytes
    accepts(Str(max_length=3), "ééé")


def test_str_length_bounds() -> None:
    refuses(Str(), "x" * 257, "257 characters")
    refuses(Str(min_length=2), "x", r"allowed 2\.\.256")
    refuses(Str(max_length=3), "éééé")


@pytest.mark.parametrize("value", [b"text", 1, None, True, ["a"]])
def test_str_refuses_other_types(value: object) -> None:
    refuses(Str(), value, "must be a string")


def test_str_choices() -> None:
    spec = Str(choices=frozenset({"yes", "no"}))
    accepts(spec, "yes")
    accepts(spec, "no")
    refuses(spec, "maybe", "not one of")
    refuses(spec, "", "not one of")


# --- Bytes and EntryId ----------------------------------------------------------------


def test_bytes_sizes() -> None:
    accepts(Bytes(), b"")
    accepts(Bytes(), b"\x00" * 1024)
    refuses(Bytes(), b"\x00" * 1025, "limit is 1024")
    accepts(Bytes(size=4), b"abcd")
    refuses(Bytes(size=4), b"abc", "must be 4 bytes")
    refuses(Bytes(size=4), b"abcde", "must be 4 bytes")
    accepts(Bytes(max_size=2), b"ab")
    refuses(Bytes(max_size=2), b"abc", "limit is 2")


@pytest.mark.parametrize("value", ["text", bytearray(b"ab"), memoryview(b"ab"), 1, None, [1]])
def test_bytes_refuses_other_types(value: object) -> None:
    refuses(Bytes(), value, "must be bytes")


def test_entry_id() -> None:
    accepts(EntryId(), ENTRY_ID)
    refuses(EntryId(), ENTRY_ID[:-1], "binary entry id")
    refuses(EntryId(), ENTRY_ID + b"\x00", "binary entry id")
    refuses(EntryId(), bytes([0x01, 0x71]) + ENTRY_ID[2:], "binary entry id")  # dag-cbor
    refuses(EntryId(), b"\x12\x20" + ENTRY_ID[4:] + b"\x00\x00", "binary entry id")
    refuses(EntryId(), bytearray(ENTRY_ID), "binary entry id")
    refuses(EntryId(), ENTRY_ID.hex(), "binary entry id")
    refuses(EntryId(), None, "binary entry id")


# --- Bool and Optional ----------------------------------------------------------------


def test_bool() -> None:
    accepts(Bool(), True)
    accepts(Bool(), False)
    for value in (0, 1, None, "true", b""):
        refuses(Bool(), value, "true or false")


def test_optional() -> None:
    spec = Optional(Int(1, 9))
    accepts(spec, None)
    accepts(spec, 5)
    refuses(spec, 0, "outside")
    refuses(spec, "5", "must be an integer")
    refuses(spec, False, "must be an integer")


# --- ListOf ---------------------------------------------------------------------------


def test_list_of_items_and_paths() -> None:
    spec = ListOf(Int(0, 9))
    accepts(spec, [])
    accepts(spec, [1, 2, 2, 9])
    error = refuses(spec, [1, 2, 10])
    assert "body.x[2]" in str(error)
    refuses(spec, (1, 2), "must be a list")
    refuses(spec, {1: 1}, "must be a list")
    refuses(spec, None, "must be a list")


def test_list_of_bounds() -> None:
    spec = ListOf(Int(), max_items=3, min_items=1)
    accepts(spec, [1])
    accepts(spec, [1, 2, 3])
    refuses(spec, [], r"0 items; allowed 1\.\.3")
    refuses(spec, [1, 2, 3, 4], r"4 items; allowed 1\.\.3")
    refuses(ListOf(Int()), list(range(65)), "65 items")
    accepts(ListOf(Int()), list(range(64)))


def test_list_of_unique() -> None:
    spec = ListOf(Int(), unique=True)
    accepts(spec, [1, 2, 3])
    refuses(spec, [1, 2, 1], "duplicate items")
    accepts(ListOf(Int()), [1, 1])
    ids = ListOf(EntryId(), unique=True)
    accepts(ids, [ENTRY_ID, ENTRY_ID[:-1] + b"\x00"])
    refuses(ids, [ENTRY_ID, ENTRY_ID], "duplicate")


def test_list_of_unique_nested_values() -> None:
    maps = ListOf(MapOf({"a": Int(), "b": ListOf(Str())}), unique=True)
    accepts(maps, [{"a": 1, "b": ["x"]}, {"a": 1, "b": ["y"]}])
    # Key order does not make two equal maps different.
    refuses(maps, [{"a": 1, "b": ["x"]}, {"b": ["x"], "a": 1}], "duplicate")
    lists = ListOf(ListOf(Int()), unique=True)
    accepts(lists, [[1, 2], [2, 1]])
    refuses(lists, [[1, 2], [1, 2]], "duplicate")


def test_list_items_checked_before_uniqueness() -> None:
    error = refuses(ListOf(Int(0, 1), unique=True), [5, 5])
    assert "body.x[0]" in str(error)


# --- MapOf and check_fields -----------------------------------------------------------


def test_map_of_nested_paths() -> None:
    spec = MapOf({"inner": MapOf({"n": Int()})})
    accepts(spec, {"inner": {"n": 3}})
    error = refuses(spec, {"inner": {"n": -1}})
    assert "body.x.inner.n" in str(error)
    refuses(spec, {"inner": [1]}, "body.x.inner must be a map")


def test_check_fields_exact() -> None:
    fields = {"a": Int(), "b": Str()}
    check_fields(fields, {"a": 1, "b": "x"}, "body")
    with pytest.raises(SchemaError, match="body is missing a, b"):
        check_fields(fields, {}, "body")
    with pytest.raises(SchemaError, match="body is missing b"):
        check_fields(fields, {"a": 1}, "body")
    with pytest.raises(SchemaError, match="unknown fields 'c', 'd'"):
        check_fields(fields, {"a": 1, "b": "x", "d": 1, "c": 2}, "body")
    with pytest.raises(SchemaError, match="body must be a map"):
        check_fields(fields, [("a", 1)], "body")
    with pytest.raises(SchemaError, match=r"body\.a must be an integer"):
        check_fields(fields, {"a": "1", "b": "x"}, "body")
    check_fields({}, {}, "body")
    with pytest.raises(SchemaError, match="unknown"):
        check_fields({}, {"x": None}, "body")


def test_check_fields_optional_may_be_missing_or_nil() -> None:
    fields = {"a": Int(), "note": Optional(Str(max_length=2))}
    check_fields(fields, {"a": 1}, "body")
    check_fields(fields, {"a": 1, "note": None}, "body")
    check_fields(fields, {"a": 1, "note": "ok"}, "body")
    with pytest.raises(SchemaError, match=r"body\.note"):
        check_fields(fields, {"a": 1, "note": "too long"}, "body")
    with pytest.raises(SchemaError, match="missing a"):
        check_fields(fields, {"note": "ok"}, "body")


def test_schema_rule_runs_after_fields() -> None:
    calls = []

    def rule(body: dict) -> None:
        calls.append(body)
        if body["a"] + body["b"] != 10:
            raise SchemaError("body.a + body.b must be 10")

    schema = Schema("pair", {"a": Int(), "b": Int()}, rule=rule)
    schema.check({"a": 3, "b": 7})
    with pytest.raises(SchemaError, match="must be 10"):
        schema.check({"a": 3, "b": 3})
    assert len(calls) == 2
    with pytest.raises(SchemaError, match="missing b"):
        schema.check({"a": 3})
    assert len(calls) == 2  # the rule never sees a body whose fields failed


# --- kinds ----------------------------------------------------------------------------


def test_core_kinds_table() -> None:
    assert {"note", "tree_head"} <= set(KINDS)
    assert KINDS["note"] is NOTE
    assert KINDS["tree_head"] is TREE_HEAD
    with pytest.raises(TypeError):
        KINDS["other"] = NOTE  # type: ignore[index]


def test_note_kind() -> None:
    check_body("note", {"text": ""})
    check_body("note", {"text": "x" * 4096})
    with pytest.raises(SchemaError, match="4097 characters"):
        check_body("note", {"text": "x" * 4097})
    with pytest.raises(SchemaError, match="must be a string"):
        check_body("note", {"text": b"bytes"})
    with pytest.raises(SchemaError, match="missing text"):
        check_body("note", {})
    with pytest.raises(SchemaError, match="unknown fields 'extra'"):
        check_body("note", {"text": "hi", "extra": 1})


def test_tree_head_kind() -> None:
    root = sha256(b"").digest()
    check_body("tree_head", {"size": 0, "root": root})
    check_body("tree_head", {"size": (1 << 63) - 1, "root": root})
    with pytest.raises(SchemaError, match="outside"):
        check_body("tree_head", {"size": -1, "root": root})
    with pytest.raises(SchemaError, match="must be an integer"):
        check_body("tree_head", {"size": True, "root": root})
    with pytest.raises(SchemaError, match="must be 32 bytes"):
        check_body("tree_head", {"size": 1, "root": root[:31]})
    with pytest.raises(SchemaError, match="must be bytes"):
        check_body("tree_head", {"size": 1, "root": root.hex()})
    with pytest.raises(SchemaError, match="missing root"):
        check_body("tree_head", {"size": 1})
    with pytest.raises(SchemaError, match="unknown"):
        check_body("tree_head", {"size": 1, "root": root, "time": 5})


def test_unknown_kind() -> None:
    with pytest.raises(UnknownKind, match="'nope'"):
        check_body("nope", {"n": 1})
    # An unknown kind is refused whatever its body, even an empty one.
    with pytest.raises(UnknownKind):
        check_body("x", {})


def test_custom_kind_table() -> None:
    vote = Schema("vote", {"choice": Str(choices=frozenset({"a", "b"}))})
    table = kind_table(NOTE, vote)
    check_body("vote", {"choice": "a"}, table)
    with pytest.raises(SchemaError):
        check_body("vote", {"choice": "c"}, table)
    with pytest.raises(UnknownKind):
        check_body("tree_head", {"size": 0, "root": b"\x00" * 32}, table)
    with pytest.raises(ValueError, match="defined twice"):
        kind_table(NOTE, Schema("note", {}))
