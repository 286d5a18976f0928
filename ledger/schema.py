"""Body schemas: what each entry kind's ``body`` must hold.

Why strict schemas: tallies are pure functions of the set of entries, and every node
and every auditor must compute the same figures from it. An entry whose body one
node reads as "3 plays" and another cannot read at all would split the co-op's
books. So a kind's body is checked in full when the entry is accepted: exactly the
listed fields, each of its declared type and range, no unknown fields, and an entry
of an unknown kind is refused. A new kind is a new chorus version.

A schema is a table (`Schema`) of field name -> `Field` spec. Specs are small value
objects with a ``check(value, path)`` that raises `SchemaError` naming the path and
the rule. Like the rest of ledger/: pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .entry import EntryError

__all__ = [
    "Bool",
    "Bytes",
    "EntryId",
    "Field",
    "Int",
    "ListOf",
    "MapOf",
    "Optional",
    "Schema",
    "SchemaError",
    "Str",
    "UnknownKind",
]

_MAX_U63 = (1 << 63) - 1
_ENTRY_ID_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])


class SchemaError(EntryError):
    """A well-formed, well-signed entry whose body breaks its kind's schema."""


class UnknownKind(SchemaError):
    """An entry of a kind this version of chorus has no schema for."""


class Field:
    """One field's rule. Subclasses implement `check`."""

    def check(self, value: Any, path: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Field):
    minimum: int = 0
    maximum: int = _MAX_U63

    def check(self, value: Any, path: str) -> None:
        if type(value) is not int:
            raise SchemaError(f"{path} must be an integer, got {type(value).__name__}")
        if not self.minimum <= value <= self.maximum:
            raise SchemaError(f"{path} = {value} is outside {self.minimum}..{self.maximum}")


@dataclass(frozen=True)
class Str(Field):
    max_length: int = 256
    min_length: int = 0
    choices: frozenset[str] | None = None

    def check(self, value: Any, path: str) -> None:
        if type(value) is not str:
            raise SchemaError(f"{path} must be a string, got {type(value).__name__}")
        if not self.min_length <= len(value) <= self.max_length:
            raise SchemaError(
                f"{path} has {len(value)} characters; allowed {self.min_length}..{self.max_length}"
            )
        if self.choices is not None and value not in self.choices:
            raise SchemaError(f"{path} = {value!r} is not one of {sorted(self.choices)}")


@dataclass(frozen=True)
class Bytes(Field):
    size: int | None = None
    max_size: int = 1024

    def check(self, value: Any, path: str) -> None:
        if type(value) is not bytes:
            raise SchemaError(f"{path} must be bytes, got {type(value).__name__}")
        if self.size is not None and len(value) != self.size:
            raise SchemaError(f"{path} must be {self.size} bytes, got {len(value)}")
        if len(value) > self.max_size:
            raise SchemaError(f"{path} is {len(value)} bytes; the limit is {self.max_size}")


@dataclass(frozen=True)
class EntryId(Field):
    """The 36-byte binary id of another entry (CIDv1, raw, sha2-256)."""

    def check(self, value: Any, path: str) -> None:
        if type(value) is not bytes or len(value) != 36 or not value.startswith(_ENTRY_ID_PREFIX):
            raise SchemaError(f"{path} must be a binary entry id (CIDv1 raw sha2-256, 36 bytes)")


@dataclass(frozen=True)
class Bool(Field):
    def check(self, value: Any, path: str) -> None:
        if type(value) is not bool:
            raise SchemaError(f"{path} must be true or false, got {type(value).__name__}")


@dataclass(frozen=True)
class Optional(Field):
    """`inner`, or nil."""

    inner: Field

    def check(self, value: Any, path: str) -> None:
        if value is not None:
            self.inner.check(value, path)


@dataclass(frozen=True)
class ListOf(Field):
    item: Field
    max_items: int = 64
    min_items: int = 0
    unique: bool = False

    def check(self, value: Any, path: str) -> None:
        if type(value) is not list:
            raise SchemaError(f"{path} must be a list, got {type(value).__name__}")
        if not self.min_items <= len(value) <= self.max_items:
            raise SchemaError(
                f"{path} has {len(value)} items; allowed {self.min_items}..{self.max_items}"
            )
        for position, item in enumerate(value):
            self.item.check(item, f"{path}[{position}]")
        if self.unique and len({_hashable(item) for item in value}) != len(value):
            raise SchemaError(f"{path} has duplicate items")


@dataclass(frozen=True)
class MapOf(Field):
    """A nested map with its own fixed fields (a sub-schema)."""

    fields: Mapping[str, Field]

    def check(self, value: Any, path: str) -> None:
        check_fields(self.fields, value, path)


@dataclass(frozen=True)
class Schema:
    """A kind's body: its fields and, optionally, a rule across fields."""

    kind: str
    fields: Mapping[str, Field]
    #: Extra check over the whole body once every field passed (e.g. splits sum).
    rule: Callable[[dict[str, Any]], None] | None = field(default=None, compare=False)
    doc: str = ""

    def check(self, body: dict[str, Any]) -> None:
        check_fields(self.fields, body, "body")
        if self.rule is not None:
            self.rule(body)


def check_fields(fields: Mapping[str, Field], value: Any, path: str) -> None:
    """`value` must be a map with exactly `fields`, each passing its spec."""
    if type(value) is not dict:
        raise SchemaError(f"{path} must be a map, got {type(value).__name__}")
    # Every gossiped entry's body comes through here: the key sets are compared as
    # views first, and the lists of names built only for the error.
    keys = value.keys()
    if not keys >= fields.keys():
        missing = [
            name
            for name, spec in fields.items()
            if name not in value and not isinstance(spec, Optional)
        ]
        if missing:
            raise SchemaError(f"{path} is missing {', '.join(sorted(missing))}")
    if not keys <= fields.keys():
        unknown = sorted(set(value) - set(fields))
        raise SchemaError(f"{path} has unknown fields {', '.join(map(repr, unknown))}")
    for name, spec in fields.items():
        spec.check(value.get(name), f"{path}.{name}")


def _hashable(value: Any) -> Any:
    if type(value) is list:
        return tuple(_hashable(item) for item in value)
    if type(value) is dict:
        return tuple(sorted((key, _hashable(item)) for key, item in value.items()))
    return value
