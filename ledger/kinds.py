"""The table of entry kinds this version of chorus accepts, and their body schemas.

The ledger's own kinds live here; the co-op's economic kinds (releases, plays,
receipts, ballots...) are defined in ledger/econ_kinds.py and registered in the same
table. The full list with every field is in docs/ledger.md and docs/economics.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .econ_kinds import ECON_KINDS
from .schema import Bytes, Int, Schema, SchemaError, Str, UnknownKind

__all__ = ["KINDS", "NOTE", "TREE_HEAD", "check_body", "kind_table"]

#: A node's signed tree head: "my log had `size` entries with this RFC 9162 root".
#: The entry's own ``time`` is the tree head's timestamp. It is appended to the
#: signer's log at index `size`, so the head always covers everything before itself.
TREE_HEAD = Schema(
    "tree_head",
    {"size": Int(0), "root": Bytes(size=32)},
    doc="signed tree head of the author node's log",
)

#: A signed free-text statement (announcements, an auditor's remarks).
NOTE = Schema("note", {"text": Str(max_length=4096)}, doc="free-text statement")


def kind_table(*schemas: Schema) -> Mapping[str, Schema]:
    """An immutable kind -> schema table; refuses two schemas for one kind."""
    table: dict[str, Schema] = {}
    for schema in schemas:
        if schema.kind in table:
            raise ValueError(f"kind {schema.kind!r} defined twice")
        table[schema.kind] = schema
    return MappingProxyType(table)


KINDS: Mapping[str, Schema] = kind_table(TREE_HEAD, NOTE, *ECON_KINDS)


def check_body(kind: str, body: dict, kinds: Mapping[str, Schema] = KINDS) -> None:
    """Raise SchemaError (UnknownKind for an unknown kind) unless `body` fits `kind`."""
    schema = kinds.get(kind)
    if schema is None:
        raise UnknownKind(f"kind {kind!r} is not one this version of chorus knows")
    schema.check(body)


__all__ += ["SchemaError"]
