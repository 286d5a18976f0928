"""The ledger under /api/chorus/v1/ledger, against a real daemon: writes with the node
key and a member key, reads, tree heads, proofs checked offline, the export checked
by the auditor, raw submissions (append, duplicate, fork), and hostile requests that
must get a typed 4xx while the daemon keeps serving."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from nacl.signing import SigningKey

from ledger.entry import sign_entry
from ledger.jsonview import id_text
from ledger.proofs import verify_bundle
from node.audit import verify_export
from node.chorus_api import API_PREFIX
from node.gossip import encode_batch
from node.identity import load_identity
from node.keystore import Keystore
from node.ledger import LedgerCounters
from node.ledger_views import ENTRY_ID_PATTERN, SCHEMAS
from node.replication import ReplicationCounters
from node.sync import SyncCounters
from tests.daemons import DaemonProcess, wait_for
from tests.node.test_auth import Answer, bearer, request, token_of

COOP = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
LEDGER = API_PREFIX + "/ledger"


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("ledger-api")
    daemon = DaemonProcess(tmp / "node", dht=False)
    daemon.cli("key", "new", "alice")
    daemon.cli("key", "new", "mallory")
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        assert not any("Traceback" in line for line in daemon.log), "\n".join(daemon.log)


def call(node: DaemonProcess, method: str, path: str, *, body: Any = None, raw: bytes | None = None,
         token: bool = True, content_type: str = "application/json") -> Answer:
    headers = {"Content-Type": content_type}
    if token:
        headers.update(bearer(token_of(node)))
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    return request(node.api, method, LEDGER + path, headers=headers, body=data)


def ok(answer: Answer) -> Any:
    assert answer.status == 200, (answer.status, answer.body)
    return answer.json()


def refused(answer: Answer, status: int, code: str) -> str:
    """The chorus error object, with this status and code; returns the message."""
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return body["error"]["message"]


def write(node: DaemonProcess, key: str, text: str) -> dict[str, Any]:
    return ok(call(node, "POST", "/entries", body={"key": key, "kind": "note",
                                                    "body": {"text": text}}))


def submit(node: DaemonProcess, data: bytes, *, token: bool = True) -> Answer:
    return call(node, "POST", "/submit", raw=data, token=token,
                content_type="application/octet-stream")


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.integration
def test_write_read_prove_export_verify(node: DaemonProcess, tmp_path: Path) -> None:
    owner = bytes(load_identity(node.data).verify_key)
    alice = Keystore(node.data).info("alice").public_hex
    mine = write(node, "self", "from the node")
    hers = write(node, "alice", "from alice")
    assert (mine["author"], mine["seq"]) == (owner.hex(), 1)
    assert (hers["author"], hers["seq"], hers["index"]) == (alice, 1, mine["index"] + 1)

    entry = ok(call(node, "GET", f"/entries/{hers['id']}"))
    assert entry["id"] == hers["id"] and entry["index"] == hers["index"]
    assert (entry["kind"], entry["body"], entry["prev"]) == ("note", {"text": "from alice"}, None)

    heads = ok(call(node, "GET", "/heads"))
    assert heads["more"] is False
    by_author = {feed["author"]: feed for feed in heads["feeds"]}
    assert by_author[alice]["head"] == hers["id"] and by_author[alice]["frozen_after"] is None
    page = ok(call(node, "GET", f"/heads?limit=1&after={min(by_author)}"))
    assert [f["author"] for f in page["feeds"]] == [max(by_author)]

    log = ok(call(node, "GET", f"/log?start={mine['index']}&limit=2"))
    assert [e["id"] for e in log["entries"]] == [mine["id"], hers["id"]]
    assert log["size"] >= 2

    signed = ok(call(node, "POST", "/tree-head?force=true"))["tree_head"]
    assert signed["size"] > hers["index"] and signed["index"] == signed["size"]
    status = ok(call(node, "GET", ""))
    assert status["owner"] == owner.hex() and status["counters"]["tree_heads"] >= 1
    assert status["sync"] is None and status["replication"] is None
    assert ok(call(node, "GET", "/tree-heads?limit=1"))["tree_heads"] == [signed]

    bundle = ok(call(node, "GET", f"/proof/inclusion/{hers['id']}"))
    proved = verify_bundle(bundle, node=owner)
    assert id_text(proved.entry.id_bytes) == hers["id"] and proved.index == hers["index"]
    assert proved.root.hex() == signed["root"]
    again = ok(call(node, "GET", f"/proof/inclusion/{hers['id']}?size={signed['size']}"))
    assert again == bundle

    later = write(node, "alice", "after the tree head")
    message = refused(call(node, "GET", f"/proof/inclusion/{later['id']}"), 409, "conflict")
    assert "tree-head --sign" in message
    newer = ok(call(node, "POST", "/tree-head"))["tree_head"]
    assert newer["size"] > later["index"]
    assert ok(call(node, "POST", "/tree-head")) == {"tree_head": None}  # nothing new
    grew = ok(call(node, "GET", f"/proof/consistency?old={signed['size']}"))
    checked = verify_bundle(grew, node=owner)
    assert (checked.old_size, checked.size) == (signed["size"], newer["size"])
    assert checked.old_root.hex() == signed["root"] and checked.root.hex() == newer["root"]
    explicit = f"/proof/consistency?old={signed['size']}&new={newer['size']}"
    assert ok(call(node, "GET", explicit)) == grew
    refused(call(node, "GET", f"/proof/consistency?old={signed['size'] + 1}"), 409, "conflict")

    exported = call(node, "GET", "/export")
    assert exported.status == 200
    assert exported.headers["Content-Type"] == "application/vnd.ipld.car"
    assert exported.headers["Content-Disposition"].startswith("attachment; filename=")
    car = tmp_path / "ledger.car"
    car.write_bytes(exported.body)
    manifest, report = verify_export(car)
    assert report.ok and manifest.node == owner and report.entries == manifest.size
    assert report.tree_heads[-1].root.hex() == newer["root"]
    assert not list(node.data.glob(".ledger-export-*"))  # the temporary file is gone

    audit = ok(call(node, "POST", "/verify"))
    assert audit["ok"] and audit["entries"] >= manifest.size and audit["log_owner"] == owner.hex()


@pytest.mark.integration
def test_submit_append_duplicate_fork(node: DaemonProcess) -> None:
    outsider = SigningKey.generate()
    first = sign_entry(outsider, 1, None, now_ms(), "note", {"text": "signed elsewhere"})
    answer = ok(submit(node, first.encoded))
    assert answer == {"id": id_text(first.id_bytes), "verdict": "append"}
    assert ok(call(node, "GET", f"/entries/{answer['id']}"))["body"]["text"] == "signed elsewhere"
    assert ok(submit(node, first.encoded))["verdict"] == "duplicate"
    third = sign_entry(outsider, 3, first.id_bytes, now_ms(), "note", {"text": "too soon"})
    assert ok(submit(node, third.encoded))["verdict"] == "early"

    forks_before = ok(call(node, "GET", ""))["counters"]["forks"]
    other = sign_entry(outsider, 1, None, now_ms(), "note", {"text": "the other story"})
    assert ok(submit(node, other.encoded))["verdict"] == "fork"
    status = ok(call(node, "GET", ""))
    assert status["counters"]["forks"] == forks_before + 1 == 1
    feeds = {f["author"]: f for f in ok(call(node, "GET", "/heads"))["feeds"]}
    assert feeds[bytes(outsider.verify_key).hex()]["frozen_after"] == 0
    later = sign_entry(outsider, 2, first.id_bytes, now_ms(), "note", {"text": "after"})
    assert ok(submit(node, later.encoded))["verdict"] == "frozen"
    audit = ok(call(node, "POST", "/verify"))
    assert audit["ok"] and not audit["clean"] and len(audit["forks"]) == 1

    # A member key whose feed froze: writing to it through the API is a conflict.
    mallory = Keystore(node.data).get("mallory")
    for text in ("one", "two"):
        entry = sign_entry(mallory, 1, None, now_ms(), "note", {"text": text})
        ok(submit(node, entry.encoded))
    message = refused(call(node, "POST", "/entries", body={
        "key": "mallory", "kind": "note", "body": {"text": "three"}}), 409, "conflict")
    assert "frozen" in message


def submit_batch(node: DaemonProcess, data: bytes, query: str = "") -> Answer:
    return call(node, "POST", "/submit-batch" + query, raw=data,
                content_type="application/msgpack")


@pytest.mark.integration
def test_submit_batch_judges_each_entry_in_one_request(node: DaemonProcess) -> None:
    key = SigningKey.generate()
    first = sign_entry(key, 1, None, now_ms(), "note", {"text": "one"})
    second = sign_entry(key, 2, first.id_bytes, now_ms(), "note", {"text": "two"})
    far = sign_entry(key, 9, second.id_bytes, now_ms(), "note", {"text": "nine"})
    forged = bytearray(sign_entry(SigningKey.generate(), 1, None, now_ms(), "note",
                                  {"text": "forged"}).encoded)
    forged[-1] ^= 1
    size = ok(call(node, "GET", ""))["size"]
    items = [first.encoded, second.encoded, first.encoded, far.encoded, bytes(forged)]
    results = ok(submit_batch(node, encode_batch(items)))["results"]
    assert [r.get("verdict") for r in results] == ["append", "append", "duplicate", "early",
                                                  None]
    assert results[0]["id"] == id_text(first.id_bytes)
    assert results[4]["refused"] == "signature" and results[4]["message"]
    assert ok(call(node, "GET", ""))["size"] == size + 2


@pytest.mark.integration
def test_submit_batch_refuses_what_is_not_a_batch(node: DaemonProcess) -> None:
    size = ok(call(node, "GET", ""))["size"]
    good = sign_entry(SigningKey.generate(), 1, None, now_ms(), "note", {"text": "x"}).encoded
    cases = [
        (b"", 400, "bad_request"),
        (b"\xc1 not msgpack", 400, "bad_request"),
        (msgpack.packb({"v": 1, "items": [good]}), 400, "bad_request"),  # key order
        (msgpack.packb({"items": [], "v": 1}), 400, "bad_request"),
        (msgpack.packb({"items": [good], "v": 2}), 400, "bad_request"),
        (msgpack.packb([good]), 400, "bad_request"),
        (encode_batch([good]) + b"\x00", 400, "bad_request"),
        (encode_batch([good] * 1025), 413, "payload_too_large"),
    ]
    for body, status, code in cases:
        refused(submit_batch(node, body), status, code)
    refused(submit_batch(node, encode_batch([good]), "?publish=false"), 400, "bad_request")
    oversize = call(node, "POST", "/submit-batch", raw=b"\x00" * (1024 * 1024 + 1),
                    content_type="application/msgpack")
    assert oversize.status == 413
    assert ok(call(node, "GET", ""))["size"] == size  # nothing stored
    unauthorised = call(node, "POST", "/submit-batch", raw=encode_batch([good]), token=False,
                        content_type="application/msgpack")
    assert unauthorised.status == 401


@pytest.mark.integration
def test_hostile_requests_get_typed_errors(node: DaemonProcess) -> None:
    size_before = ok(call(node, "GET", ""))["size"]
    dag_pb = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
    unknown = "bafkreigzbnc5qmxt4cb6u7vshtz5sgcisgqadffzovtrwcvvweueae7iem"
    assert "not an entry id" in refused(call(node, "GET", "/entries/nope"), 400, "bad_request")
    assert "not an entry id" in refused(call(node, "GET", f"/entries/{dag_pb}"), 400,
                                        "bad_request")
    assert unknown in refused(call(node, "GET", f"/entries/{unknown}"), 404, "not_found")
    refused(call(node, "GET", f"/proof/inclusion/{unknown}"), 404, "not_found")
    refused(call(node, "GET", "/entries/%0Abad"), 400, "bad_request")

    for path in ("/log?limit=0", "/log?limit=1001", "/log?start=-1", "/log?start=1.5",
                 "/heads?after=zz", "/heads?after=" + "AB" * 32, "/heads?limit=4097",
                 "/tree-heads?limit=0", "/log?bogus=1", "/proof/consistency",
                 "/proof/consistency?old=0"):
        refused(call(node, "GET", path), 400, "bad_request")
    refused(call(node, "POST", "/tree-head?force=maybe"), 400, "bad_request")

    def post_entry(body: Any = None, raw: bytes | None = None) -> Answer:
        return call(node, "POST", "/entries", body=body, raw=raw)

    refused(post_entry(raw=b"{not json"), 400, "bad_request")
    refused(post_entry(raw=b"\xff\xfe"), 400, "bad_request")
    refused(post_entry(body=["key", "kind", "body"]), 400, "bad_request")
    refused(post_entry(body={"key": "self", "kind": "note"}), 400, "bad_request")
    refused(post_entry(body={"key": "self", "kind": "note", "body": {"text": "x"}, "x": 1}),
            400, "bad_request")
    refused(post_entry(body={"key": 7, "kind": "note", "body": {}}), 400, "bad_request")
    float_message = refused(post_entry(body={"key": "self", "kind": "note",
                                             "body": {"text": 1.5}}), 422, "invalid")
    assert "float" in float_message
    assert "nonsense" in refused(
        post_entry(body={"key": "self", "kind": "nonsense", "body": {}}), 422, "invalid")
    refused(post_entry(body={"key": "self", "kind": "tree_head",
                             "body": {"size": 0, "root": {"/": {"bytes": "AA"}}}}),
            422, "invalid")
    refused(post_entry(body={"key": "self", "kind": "note", "body": {"text": "x" * 4097}}),
            422, "invalid")
    assert "'nobody'" in refused(post_entry(body={"key": "nobody", "kind": "note",
                                                  "body": {"text": "x"}}), 404, "not_found")
    refused(post_entry(body={"key": "../identity", "kind": "note", "body": {"text": "x"}}),
            400, "bad_request")

    assert "65536" in refused(submit(node, b"\x80" * (64 * 1024 + 1)), 413, "payload_too_large")
    assert "refused: format:" in refused(submit(node, b"\xc1 garbage"), 409, "refused")
    assert "canonical" in refused(submit(node, b"garbage"), 409, "refused")
    refused(submit(node, b""), 409, "refused")
    forged = bytearray(sign_entry(SigningKey.generate(), 1, None, now_ms(), "note",
                                  {"text": "forged"}).encoded)
    forged[-1] ^= 0x01  # inside the signature
    assert "signature" in refused(submit(node, bytes(forged)), 409, "refused")

    assert "no co-op" in refused(call(node, "POST", "/sync?peer=12D3KooWExample"), 409,
                                 "no_coop")

    # The node keeps serving, and none of that reached the log.
    status = ok(call(node, "GET", ""))
    assert status["size"] == size_before
    assert ok(call(node, "POST", "/verify"))["ok"]


@pytest.mark.integration
def test_writes_need_the_token_and_reads_do_not(node: DaemonProcess) -> None:
    for path, body in (("/entries", b'{"key": "self", "kind": "note", "body": {"text": "x"}}'),
                       ("/submit", b"x"), ("/tree-head?force=true", None), ("/verify", None),
                       ("/sync?peer=x", None)):
        answer = call(node, "POST", path, raw=body, token=False)
        refused(answer, 401, "unauthorized")
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    for path in ("", "/heads", "/log", "/tree-heads", "/export"):
        assert call(node, "GET", path, token=False).status == 200


def test_the_documented_counters_are_the_counters() -> None:
    for schema, counters in (("LedgerCounters", LedgerCounters), ("SyncCounters", SyncCounters),
                             ("ReplicationCounters", ReplicationCounters)):
        names = [f.name for f in dataclasses.fields(counters)]
        assert SCHEMAS[schema]["required"] == names


def test_the_entry_id_pattern_matches_every_entry_id() -> None:
    import re

    key = SigningKey.generate()
    for n in range(200):
        entry = sign_entry(key, 1, None, n, "note", {"text": str(n)})
        assert re.fullmatch(ENTRY_ID_PATTERN.strip("^$"), id_text(entry.id_bytes))


@pytest.mark.integration
def test_sync_with_a_coop_peer(tmp_path: Path) -> None:
    a = DaemonProcess(tmp_path / "a", coop=COOP, dht=False).start()
    b = DaemonProcess(tmp_path / "b", coop=COOP, dht=False).start()
    try:
        written = write(a, "self", "to be synced")
        b.connect(a)
        result = ok(call(b, "POST", f"/sync?peer={a.peer_id}"))
        assert result["peer"] == a.peer_id and result["feeds"] >= 1
        wait_for(lambda: call(b, "GET", f"/entries/{written['id']}").status == 200,
                 what="B to hold A's entry")
        status = ok(call(b, "GET", ""))
        assert status["sync"]["sessions"] >= 1 and status["replication"] is not None
        refused(call(b, "POST", "/sync?peer=not-a-peer"), 400, "bad_request")
        stranger = "12D3KooWR14hP6TUPYSGfE39Z6itfSUHJb9xT9wtffbyUnFuaDNm"
        assert stranger in refused(call(b, "POST", f"/sync?peer={stranger}"), 503,
                                   "unavailable")
    finally:
        b.stop()
        a.stop()
