"""Entries as JSON, for the API, the CLI and the web page.

Entry bodies are msgpack values, which JSON cannot hold as they are: bytes have no
JSON type. They are written the DAG-JSON way, ``{"/": {"bytes": "<base64>"}}``
(unpadded standard base64), so any IPLD tool reads them, and ids and keys take their
usual text forms (CID strings, hex keys). `body_from_json` is the inverse, for bodies
that come in as JSON (the API and CLI writes).
"""

from __future__ import annotations

import base64
from typing import Any

from .entry import SignedEntry
from .schema import SchemaError

__all__ = ["body_from_json", "body_to_json", "entry_to_json", "id_text"]


def id_text(id_bytes: bytes) -> str:
    """An entry id (binary CIDv1) as its CID string (multibase base32, as Kubo prints
    it), without building a CID object: ids are printed for every entry listed."""
    return "b" + base64.b32encode(id_bytes).decode("ascii").lower().rstrip("=")


def body_to_json(value: Any) -> Any:
    if type(value) is bytes:
        return {"/": {"bytes": base64.b64encode(value).decode("ascii").rstrip("=")}}
    if type(value) is dict:
        return {key: body_to_json(item) for key, item in value.items()}
    if type(value) is list:
        return [body_to_json(item) for item in value]
    return value


def body_from_json(value: Any, path: str = "body", depth: int = 0) -> Any:
    """A JSON value as an entry body value; SchemaError for what no body can hold."""
    if depth > 32:
        raise SchemaError(f"{path} nests too deeply")
    if type(value) is dict:
        if set(value) == {"/"} and type(value["/"]) is dict and set(value["/"]) == {"bytes"}:
            text = value["/"]["bytes"]
            if type(text) is not str:
                raise SchemaError(f"{path} bytes must be base64 text")
            try:
                return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            except ValueError:  # binascii.Error, or text that is not ASCII
                raise SchemaError(f"{path} is not valid base64") from None
        return {str(k): body_from_json(v, f"{path}.{k}", depth + 1) for k, v in value.items()}
    if type(value) is list:
        return [body_from_json(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if type(value) is float:
        raise SchemaError(f"{path} is a float; entries hold integers only")
    if value is None or type(value) in (bool, int, str):
        return value
    raise SchemaError(f"{path} has a value of type {type(value).__name__}")


def entry_to_json(entry: SignedEntry, *, index: int | None = None) -> dict[str, Any]:
    return {
        "id": id_text(entry.id_bytes),
        "index": index,
        "author": entry.author.hex(),
        "seq": entry.seq,
        "prev": None if entry.prev is None else id_text(entry.prev),
        "time": entry.time,
        "kind": entry.kind,
        "body": body_to_json(entry.body),
        "sig": entry.sig.hex(),
        "data": base64.b64encode(entry.encoded).decode("ascii"),
    }
