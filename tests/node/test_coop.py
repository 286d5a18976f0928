"""node/coop.py: the genesis in a repo (join, load, refusals), fetched by its CID from
a node (an in-process HTTP server: success, another co-op, garbage, no co-op,
unreachable), tallies of a node's log and of an export (freezes respected, the same
figures both ways), the JSON views against their schemas, the audit's invariants, and
the daemon's use of the genesis."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from nacl.signing import SigningKey

from ledger.entry import sign_entry
from ledger.feed import Verdict
from ledger.genesis import Genesis, Params, create_genesis
from ledger.jsonview import id_text
from node import coop
from node.audit import export_ledger_file
from node.chorus_api import SCHEMAS
from node.coop import (
    CoopError,
    CoopFetchError,
    CoopMismatch,
    GenesisFileError,
    NotInCoop,
    fetch_genesis,
    find_genesis,
    invariants,
    join_coop,
    load_genesis,
    proposals_json,
    require_genesis,
    tally_export,
    tally_json,
    tally_store,
    wallet_json,
)
from node.daemon import Daemon, DaemonOptions
from node.repo import Repo
from protocol.cid import cid_to_text, make_cid

T0 = 1_700_000_000_000
ANN = SigningKey(bytes([1]) * 32)  # board
BEN = SigningKey(bytes([2]) * 32)  # board
TILL = SigningKey(bytes([3]) * 32)  # treasury
BOB = SigningKey(bytes([4]) * 32)  # listener, member
ART = SigningKey(bytes([5]) * 32)  # artist
TRACK = cid_to_text(make_cid(b"a track"))


def pk(key: SigningKey) -> bytes:
    return bytes(key.verify_key)


def make_genesis(name: str = "Riverside", **params: int) -> Genesis:
    return create_genesis(name, [ANN, BEN], [pk(TILL)], Params(**params), T0)


def validate(name: str, value: Any) -> None:
    """`value` against the API's JSON Schema `name` (as schemathesis would)."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/components/schemas/{name}",
        "components": {"schemas": SCHEMAS},
    }
    jsonschema_rs.validator_for(schema).validate(json.loads(json.dumps(value)))


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    Repo.init(path).close()
    return path


# -- the genesis in a repo ------------------------------------------------------------------


def test_join_writes_the_genesis_then_names_it(repo_path: Path) -> None:
    assert load_genesis(repo_path) is None
    with pytest.raises(NotInCoop, match="coop join"):
        require_genesis(repo_path)
    genesis = make_genesis()
    joined = join_coop(repo_path, genesis.encoded)
    assert joined == genesis
    assert (repo_path / coop.GENESIS_FILE).read_bytes() == genesis.encoded
    config = json.loads((repo_path / "config.json").read_text())
    assert config["coop"] == genesis.id_text and config["version"] == 1
    assert load_genesis(repo_path) == genesis
    # The repo still opens, and keeps the key (RepoConfig.extra).
    with Repo.open(repo_path) as repo:
        assert repo.config.extra["coop"] == genesis.id_text
    # Joining again is a no-op that restores a lost file; another co-op is refused.
    (repo_path / coop.GENESIS_FILE).unlink()
    assert join_coop(repo_path, genesis.encoded) == genesis
    assert (repo_path / coop.GENESIS_FILE).read_bytes() == genesis.encoded
    other = make_genesis("Elsewhere")
    with pytest.raises(CoopMismatch, match="already a node of co-op"):
        join_coop(repo_path, other.encoded)
    assert load_genesis(repo_path) == genesis


def test_join_refuses_what_is_not_a_genesis(repo_path: Path) -> None:
    genesis = make_genesis()
    tampered = bytearray(genesis.encoded)
    tampered[-5] ^= 1  # inside the last signature
    for data, cause in [
        (b"", "MalformedGenesis"),
        (b"\x81\xa1a\x01", "MalformedGenesis"),
        (bytes(tampered), "BadGenesisSignature"),
        (genesis.encoded + b"\x00", "NonCanonicalGenesis"),
    ]:
        with pytest.raises(GenesisFileError, match=cause):
            join_coop(repo_path, data)
    assert load_genesis(repo_path) is None
    assert not (repo_path / coop.GENESIS_FILE).exists()


def test_load_refuses_a_missing_or_foreign_genesis_file(repo_path: Path) -> None:
    genesis = make_genesis()
    join_coop(repo_path, genesis.encoded)
    (repo_path / coop.GENESIS_FILE).unlink()
    with pytest.raises(GenesisFileError, match="is missing"):
        load_genesis(repo_path)
    (repo_path / coop.GENESIS_FILE).write_bytes(make_genesis("Elsewhere").encoded)
    with pytest.raises(GenesisFileError, match="names co-op " + genesis.id_text):
        load_genesis(repo_path)
    (repo_path / coop.GENESIS_FILE).write_bytes(b"garbage")
    with pytest.raises(GenesisFileError, match="not a valid co-op genesis"):
        load_genesis(repo_path)


def test_read_genesis_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(GenesisFileError, match="cannot read the genesis"):
        coop.read_genesis(tmp_path / "nope.genesis")
    big = tmp_path / "big.genesis"
    big.write_bytes(b"\x00" * (70 * 1024))
    with pytest.raises(GenesisFileError, match="GenesisTooLarge"):
        coop.read_genesis(big)


# -- a genesis fetched by its CID ----------------------------------------------------------


class CoopServer:
    """An HTTP server on 127.0.0.1 in a thread that answers every GET with `answer`
    (status, body), and records the paths asked for. `delay` holds each answer back."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes] = (404, b"")
        self.delay = 0.0
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                time.sleep(server.delay)
                status, body = server.answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client stopped reading early
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, status: int, value: object) -> None:
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.answer = (status, body)


@pytest.fixture
def coop_server() -> Iterator[CoopServer]:
    server = CoopServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(5)


def no_coop_answer() -> dict[str, Any]:
    """What node/coop_api.py answers (409) for a node in no co-op."""
    return {"error": {"code": "no_coop", "message": "this node is in no co-op"}}


def test_fetch_genesis_by_its_cid(coop_server: CoopServer) -> None:
    genesis = make_genesis(play_price=2500)
    coop_server.serve(200, coop.genesis_json(genesis))
    assert fetch_genesis(coop_server.url, genesis.id_text) == genesis
    assert coop_server.paths == ["/api/chorus/v1/coop"]
    # A trailing slash, no scheme (http is meant), spaces around the CID: the same.
    bare = coop_server.url.removeprefix("http://")
    assert fetch_genesis(coop_server.url + "/", f" {genesis.id_text} ") == genesis
    assert fetch_genesis(bare, genesis.id_text) == genesis
    assert coop_server.paths == ["/api/chorus/v1/coop"] * 3
    # find_genesis: with a URL the source is a CID.
    assert find_genesis(genesis.id_text, coop_server.url) == genesis


def test_fetch_genesis_refuses_another_coop(coop_server: CoopServer) -> None:
    wanted, served = make_genesis(), make_genesis("Elsewhere")
    coop_server.serve(200, coop.genesis_json(served))
    with pytest.raises(CoopMismatch) as refused:
        fetch_genesis(coop_server.url, wanted.id_text)
    assert wanted.id_text in str(refused.value) and served.id_text in str(refused.value)
    # The "id" the node claims counts for nothing: only the bytes' hash does.
    coop_server.serve(200, {**coop.genesis_json(served), "id": wanted.id_text})
    with pytest.raises(CoopMismatch, match=served.id_text):
        fetch_genesis(coop_server.url, wanted.id_text)


def test_fetch_genesis_refuses_garbage(coop_server: CoopServer) -> None:
    genesis = make_genesis()
    tampered = bytearray(genesis.encoded)
    tampered[-5] ^= 1
    for answer, error, cause in [
        (b"<html>a web page</html>", CoopFetchError, "did not answer with JSON"),
        (b"\xff\xfe", CoopFetchError, "did not answer with JSON"),
        ([1, 2, 3], CoopFetchError, 'without the genesis \\(no "data"'),
        ({"id": genesis.id_text}, CoopFetchError, 'no "data" string'),
        ({"data": "not base64!"}, CoopFetchError, "not base64"),
        ({"data": base64.b64encode(b"nonsense").decode()}, GenesisFileError,
         "served is not a valid co-op genesis \\("),
        ({"data": base64.b64encode(bytes(tampered)).decode()}, GenesisFileError,
         "BadGenesisSignature"),
        (b" " * (coop.MAX_FETCH_SIZE + 1), CoopFetchError, "more than 1,048,576 bytes"),
    ]:
        coop_server.serve(200, answer)
        with pytest.raises(error, match=cause):
            fetch_genesis(coop_server.url, genesis.id_text)
    # Error statuses: a node in no co-op, something that is no chorus node, others.
    coop_server.serve(409, no_coop_answer())
    with pytest.raises(CoopFetchError, match="is in no co-op"):
        fetch_genesis(coop_server.url, genesis.id_text)
    coop_server.serve(404, b"no such page")
    with pytest.raises(CoopFetchError, match="404 Not Found: is it a chorus node"):
        fetch_genesis(coop_server.url, genesis.id_text)
    coop_server.serve(503, {"error": {"code": "unavailable", "message": "starting"}})
    with pytest.raises(CoopFetchError, match="answered HTTP 503 \\(unavailable: starting\\)"):
        fetch_genesis(coop_server.url, genesis.id_text)
    coop_server.serve(500, b"oops")
    with pytest.raises(CoopFetchError, match="answered HTTP 500"):
        fetch_genesis(coop_server.url, genesis.id_text)


def test_fetch_genesis_unreachable_slow_or_malformed_arguments(
    coop_server: CoopServer,
) -> None:
    genesis = make_genesis()
    with socket.socket() as sock:  # a port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CoopFetchError, match=f"cannot reach http://127.0.0.1:{port}/api"):
        fetch_genesis(f"http://127.0.0.1:{port}", genesis.id_text)
    coop_server.serve(200, coop.genesis_json(genesis))
    coop_server.delay = 1.0
    started = time.monotonic()
    with pytest.raises(CoopFetchError, match="timed out"):
        fetch_genesis(coop_server.url, genesis.id_text, timeout=0.2)
    assert time.monotonic() - started < 0.9
    coop_server.delay = 0.0
    with pytest.raises(CoopError, match="'riverside' is not a co-op CID"):
        fetch_genesis(coop_server.url, "riverside")
    with pytest.raises(CoopFetchError, match="http\\(s\\) address, not 'ftp://x'"):
        fetch_genesis("ftp://x", genesis.id_text)


def test_find_genesis_file_or_cid(tmp_path: Path) -> None:
    genesis = make_genesis()
    path = tmp_path / "riverside.genesis"
    path.write_bytes(genesis.encoded)
    assert find_genesis(path) == genesis and find_genesis(str(path)) == genesis
    with pytest.raises(CoopError, match=f"{genesis.id_text} is a co-op CID.*pass --from URL"):
        find_genesis(genesis.id_text)
    with pytest.raises(GenesisFileError, match="cannot read the genesis"):
        find_genesis(tmp_path / "missing.genesis")


# -- tallies of a log and of an export --------------------------------------------------------


def _write(store, key: SigningKey, kind: str, body: dict, at: int) -> Any:
    return store.write(key, kind, body, at)


def _fill(store) -> dict[str, Any]:
    """Members, a release, top-ups, plays (one unpaid), and a treasury feed that forks."""
    _write(store, ANN, "member.admit", {"member": pk(BOB), "class": "listener"}, T0)
    _write(store, ANN, "member.admit", {"member": pk(ART), "class": "artist"}, T0 + 1)
    release = _write(
        store, ART, "release",
        {
            "title": "First",
            "tracks": [{"cid": TRACK, "title": "One", "duration_ms": 200_000, "size": 10,
                        "mime": "audio/ogg"}],
            "payees": [{"key": pk(ART), "bps": 10000}],
        },
        T0 + 2,
    ).entry
    topup = _write(store, TILL, "topup", {"wallet": pk(BOB), "amount": 5000}, T0 + 3).entry
    play = {"track": TRACK, "release": release.id_bytes, "played_ms": 60_000, "hosts": []}
    for i in range(3):  # 2000 + 4000 paid, the third (8000) is unpaid
        _write(store, BOB, "play", play, T0 + 10 + i)
    # The treasury equivocates at seq 2: both top-ups are in the log, neither counts.
    forks = [
        sign_entry(TILL, 2, topup.id_bytes, T0 + 20, "topup", {"wallet": pk(BOB), "amount": a})
        for a in (1_000_000, 2_000_000)
    ]
    verdicts = [outcome.verdict for outcome in store.submit(forks, T0 + 30)]
    assert verdicts == [Verdict.APPEND, Verdict.FORK]
    proposal = _write(
        store, BOB, "proposal",
        {"title": "Q", "text": "", "options": ["a", "b"], "opens": T0 + 50,
         "closes": T0 + 10_000, "classes": ["listener", "artist"]},
        T0 + 40,
    ).entry
    _write(store, BOB, "ballot", {"proposal": proposal.id_bytes, "option": 1}, T0 + 60)
    return {"release": release, "proposal": proposal, "forks": forks}


def test_tally_of_the_store_respects_freezes(repo_path: Path) -> None:
    genesis = make_genesis()
    with Repo.open(repo_path) as repo:
        made = _fill(repo.ledger)
        assert repo.ledger.head(pk(TILL)).frozen_after == 1
        result = tally_store(repo.ledger, genesis)
        audited = tally_store(repo.ledger, genesis, trusted=False)
    assert audited.to_json() == result.to_json()
    assert result.frozen == {pk(TILL): 1}
    assert result.topups == {pk(BOB): 5000}
    stats = result.plays[(pk(BOB), TRACK)]
    assert (stats.paid, stats.unpaid, stats.spent) == (1, 2, 2000)
    assert result.balances[pk(BOB)] == 5000 - 2000  # the 2nd play's 4000 did not fit
    assert [a.code for a in result.anomalies].count("play_unpaid") == 2
    assert "equivocation" in {a.code for a in result.anomalies}
    assert result.members == {pk(BOB): "listener", pk(ART): "artist"}
    vote = result.votes[made["proposal"].id_bytes]
    assert (vote.eligible, vote.counted, vote.totals, vote.winner) == (2, 1, [0, 1], 1)

    value = tally_json(result, genesis)
    validate("Tally", value)
    assert value["coop"] == genesis.id_text and value["epoch"] is None
    assert all(check["ok"] for check in invariants(value))
    one = tally_json(result, genesis, epoch=T0 // genesis.params.epoch_ms)
    assert list(one["epochs"]) == [str(T0 // genesis.params.epoch_ms)]
    empty = tally_json(result, genesis, epoch=0)
    assert empty["epochs"] == {"0": coop._epoch_zero()}
    validate("Tally", empty)

    wallet = wallet_json(result, pk(BOB))
    validate("Wallet", wallet)
    assert wallet["balance"] == 3000 and wallet["member"] == "listener"
    (track,) = wallet["tracks"]
    assert (track["paid"], track["unpaid"], track["next_price"]) == (1, 2, 4000)
    assert wallet_json(result, pk(ART))["earned"] == result.earnings[pk(ART)]
    proposals = proposals_json(result)
    validate("Proposals", proposals)
    assert proposals["proposals"][0]["id"] == id_text(made["proposal"].id_bytes)


def test_tally_of_an_export_is_the_tally_of_the_store(repo_path: Path, tmp_path: Path) -> None:
    genesis = make_genesis()
    export = tmp_path / "ledger.car"
    with Repo.open(repo_path) as repo:
        _fill(repo.ledger)
        repo.ledger.sign_tree_head(repo.identity, T0 + 100)
        from_store = tally_store(repo.ledger, genesis)
        export_ledger_file(repo.ledger, export, coop=genesis.id_text)
    manifest, from_file = tally_export(export, genesis, now_ms=T0 + 1000)
    assert manifest.coop == genesis.id_text
    assert from_file.to_json() == from_store.to_json()
    with pytest.raises(CoopMismatch, match="export of co-op"):
        tally_export(export, make_genesis("Elsewhere"), now_ms=T0 + 1000)


def test_invariants_catch_books_that_do_not_balance(repo_path: Path) -> None:
    genesis = make_genesis()
    with Repo.open(repo_path) as repo:
        _fill(repo.ledger)
        value = tally_json(tally_store(repo.ledger, genesis), genesis)
    epoch = next(iter(value["epochs"]))
    value["epochs"][epoch]["coop_retained"] += 1
    value["totals"]["balances"] += 5
    broken = [check["rule"] for check in invariants(value) if not check["ok"]]
    assert broken == [
        f"epoch {epoch}: paid plays = payees + co-op retained + host pay",
        "top-ups = balances + paid plays",
    ]


def test_genesis_json() -> None:
    genesis = make_genesis(play_price=2500)
    value = coop.genesis_json(genesis)
    validate("Genesis", value)
    assert value["id"] == genesis.id_text and value["params"]["play_price"] == 2500
    assert value["board"] == sorted([pk(ANN).hex(), pk(BEN).hex()])
    assert base64.b64decode(value["data"]) == genesis.encoded


# -- the daemon ------------------------------------------------------------------------------


def test_the_daemon_loads_the_genesis_or_refuses_to_start(repo_path: Path) -> None:
    genesis = make_genesis()
    with Repo.open(repo_path) as repo:
        plain = Daemon(repo, DaemonOptions(dht=False))
        assert plain.genesis is None and plain.gossip is None
    join_coop(repo_path, genesis.encoded)
    with Repo.open(repo_path) as repo:
        options = DaemonOptions(dht=False)
        daemon = Daemon(repo, options)
        assert daemon.genesis == genesis
        assert options.coop == genesis.id_text and daemon.gossip is not None
        with pytest.raises(CoopMismatch, match="not the co-op this repo joined"):
            Daemon(repo, DaemonOptions(dht=False, coop=make_genesis("Elsewhere").id_text))
    (repo_path / coop.GENESIS_FILE).unlink()
    with Repo.open(repo_path) as repo, pytest.raises(GenesisFileError, match="is missing"):
        Daemon(repo, DaemonOptions(dht=False))
