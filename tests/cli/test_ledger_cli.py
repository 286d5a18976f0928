"""`chorus ledger ...`: offline flows in-process (the repo opened directly), proofs and
audits that need no node, and one run through a daemon's API."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cli.main import main
from ledger.proofs import verify_bundle
from node.identity import load_identity, peer_id_of
from node.keystore import Keystore
from tests.daemons import DaemonProcess


def chorus(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data", str(data), *args])
    out, err = capsys.readouterr()
    return code, out, err


def chorus_json(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> dict:
    code, out, err = chorus(capsys, data, *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def repo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A repo with member key alice and three notes: self, alice, self."""
    data = tmp_path / "repo"
    assert chorus(capsys, data, "init")[0] == 0
    assert chorus(capsys, data, "key", "new", "alice")[0] == 0
    chorus_json(capsys, data, "ledger", "append", "--text", "first, by the node")
    chorus_json(capsys, data, "ledger", "append", "--key", "alice", "--kind", "note",
                "--body", '{"text": "second, by alice"}')
    chorus_json(capsys, data, "ledger", "append", "--key", "self", "--text", "third")
    return data


def test_append_with_two_keys(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = bytes(load_identity(repo).verify_key).hex()
    alice = Keystore(repo).info("alice").public_hex
    written = chorus_json(capsys, repo, "ledger", "append", "--key", "alice", "--text", "more")
    assert (written["index"], written["seq"], written["author"]) == (3, 2, alice)

    page = chorus_json(capsys, repo, "ledger", "log")
    assert page["size"] == 4
    assert [(e["author"], e["seq"], e["body"]["text"]) for e in page["entries"]] == [
        (node, 1, "first, by the node"),
        (alice, 1, "second, by alice"),
        (node, 2, "third"),
        (alice, 2, "more"),
    ]
    assert page["entries"][3]["id"] == written["id"]
    assert page["entries"][3]["prev"] == page["entries"][1]["id"]

    shown = chorus_json(capsys, repo, "ledger", "show", written["id"])
    assert shown == page["entries"][3]
    code, out, _ = chorus(capsys, repo, "ledger", "show", written["id"])
    assert code == 0 and "index   3" in out and '"text": "more"' in out

    feeds = chorus_json(capsys, repo, "ledger", "heads")["feeds"]
    assert {f["author"]: f["seq"] for f in feeds} == {node: 2, alice: 2}
    status = chorus_json(capsys, repo, "ledger", "status")
    assert (status["size"], status["feeds"], status["owner"]) == (4, 2, node)
    assert status["tree_head"] is None and status["counters"] is None


def test_refused_appends_are_one_line_errors(repo: Path, capsys) -> None:
    for args, cause in [
        (["--key", "bob", "--text", "x"], "no key named 'bob'"),
        (["--body", '{"text": 1.5}'], "float"),
        (["--body", "[1]"], "JSON object"),
        (["--body", "{nope"], "not JSON"),
        (["--kind", "nonsense", "--body", "{}"], "kind 'nonsense'"),
        (["--kind", "tree_head", "--body", "{}"], "tree heads are signed by the node"),
        (["--body", '{"text": "x", "extra": 1}'], "unknown fields"),
    ]:
        code, out, err = chorus(capsys, repo, "ledger", "append", *args)
        assert code == 1 and out == "", args
        assert err.startswith("chorus: error: ") and cause in err and err.count("\n") == 1, err
    assert chorus_json(capsys, repo, "ledger", "status")["size"] == 3


def test_tree_head_and_proofs(repo: Path, tmp_path: Path, capsys) -> None:
    node_key = bytes(load_identity(repo).verify_key)
    first = chorus_json(capsys, repo, "ledger", "log")["entries"][1]["id"]
    code, _, err = chorus(capsys, repo, "ledger", "proof", "inclusion", first)
    assert code == 1 and "no tree head covers" in err and "tree-head --sign" in err

    head = chorus_json(capsys, repo, "ledger", "tree-head", "--sign")["tree_head"]
    assert (head["size"], head["index"]) == (3, 3)
    assert chorus_json(capsys, repo, "ledger", "tree-head", "--sign") == {"tree_head": None}
    code, out, _ = chorus(capsys, repo, "ledger", "tree-head", "--sign")
    assert code == 0 and "nothing new" in out
    assert chorus_json(capsys, repo, "ledger", "tree-head")["tree_head"] == head

    bundle_file = tmp_path / "entry.proof"
    code, out, _ = chorus(capsys, repo, "ledger", "proof", "inclusion", first, "-o",
                          str(bundle_file))
    assert code == 0 and str(bundle_file) in out
    bundle = json.loads(bundle_file.read_text())
    assert (bundle["type"], bundle["index"], bundle["size"]) == ("inclusion", 1, 3)
    assert verify_bundle(bundle, node=node_key).root.hex() == head["root"]

    peer = peer_id_of(load_identity(repo))
    for node in (peer, node_key.hex(), None):
        extra = [] if node is None else ["--node", node]
        code, out, _ = chorus(capsys, repo, "ledger", "proof", "verify", str(bundle_file), *extra)
        assert code == 0 and out.startswith(f"ok: entry {first} is at index 1")
        assert ("not checked" in out) is (node is None)
    proved = chorus_json(capsys, repo, "ledger", "proof", "verify", str(bundle_file))
    assert proved["ok"] and proved["entry"] == first and proved["size"] == 3

    # Another node's key, a tampered path, a moved index: exit 1 and why.
    other = "ab" * 32
    code, _, err = chorus(capsys, repo, "ledger", "proof", "verify", str(bundle_file),
                          "--node", other)
    assert code == 1 and "not by the expected node" in err
    tampered = tmp_path / "tampered.proof"
    tampered.write_text(json.dumps({**bundle, "index": 2}))
    code, out, err = chorus(capsys, repo, "ledger", "proof", "verify", str(tampered))
    assert code == 1 and out == "" and err.startswith("chorus: error: the proof does not hold")
    code, out, _ = chorus(capsys, repo, "ledger", "proof", "verify", str(tampered), "--json")
    assert code == 1 and json.loads(out)["ok"] is False
    tampered.write_text("{not json")
    assert chorus(capsys, repo, "ledger", "proof", "verify", str(tampered))[0] == 1
    code, _, err = chorus(capsys, repo, "ledger", "proof", "verify", str(bundle_file),
                          "--node", "not-a-key")
    assert code == 1 and "neither a 64-hex public key nor the peer ID" in err

    # A second tree head, then the log between the two is provably append-only.
    chorus_json(capsys, repo, "ledger", "append", "--key", "alice", "--text", "later")
    newer = chorus_json(capsys, repo, "ledger", "tree-head", "--sign")["tree_head"]
    assert newer["size"] == 5
    grew = tmp_path / "grew.proof"
    assert chorus(capsys, repo, "ledger", "proof", "consistency", "3", "-o", str(grew))[0] == 0
    checked = verify_bundle(json.loads(grew.read_text()), node=node_key)
    assert (checked.old_size, checked.size, checked.root.hex()) == (3, 5, newer["root"])
    code, out, _ = chorus(capsys, repo, "ledger", "proof", "consistency", "3", "5")
    assert code == 0 and json.loads(out) == json.loads(grew.read_text())
    code, out, _ = chorus(capsys, repo, "ledger", "proof", "verify", str(grew))
    assert code == 0 and "the log of size 3" in out and "prefix of the log of size 5" in out
    code, _, err = chorus(capsys, repo, "ledger", "proof", "consistency", "4")
    assert code == 1 and "no tree head for size 4" in err
    # Inclusion against the older head, which holds the entry too.
    old = chorus_json(capsys, repo, "ledger", "log", "--start", "1", "--limit", "1")
    code, out, _ = chorus(capsys, repo, "ledger", "proof", "inclusion",
                          old["entries"][0]["id"], "--size", "3")
    assert code == 0 and verify_bundle(json.loads(out), node=node_key).size == 3


def test_export_and_verify_a_file(repo: Path, tmp_path: Path, capsys) -> None:
    chorus_json(capsys, repo, "ledger", "tree-head", "--sign")
    out_file = tmp_path / "ledger.car"
    code, out, _ = chorus(capsys, repo, "ledger", "export", "-o", str(out_file))
    assert code == 0 and "exported 4 entries" in out

    code, out, err = chorus(capsys, repo, "ledger", "verify", str(out_file), "--workers", "1")
    assert code == 0, err
    assert "ok: the log is sound" in out and "index " not in out
    report = chorus_json(capsys, repo, "ledger", "verify", str(out_file), "--workers", "2")
    assert report["ok"] and report["entries"] == 4 and report["feeds"] == 2
    assert report["uncovered"] == 0 and len(report["tree_heads"]) == 1

    # Verifying a file needs no repo at all.
    nowhere = tmp_path / "no-repo"
    assert chorus(capsys, nowhere, "ledger", "verify", str(out_file))[0] == 0
    assert not nowhere.exists()

    # One flipped byte inside alice's note: that entry no longer hashes to its id.
    data = bytearray(out_file.read_bytes())
    where = data.index(b"second, by alice")
    data[where] ^= 0x01
    broken = tmp_path / "broken.car"
    broken.write_bytes(bytes(data))
    code, out, err = chorus(capsys, repo, "ledger", "verify", str(broken), "--workers", "1")
    assert code == 1 and err.startswith("chorus: error: the log does not verify")
    finding = [line for line in out.splitlines() if line.startswith("index 1  ")]
    assert len(finding) == 1 and "  id: " in finding[0], out
    code, out, _ = chorus(capsys, repo, "ledger", "verify", str(broken), "--json")
    assert code == 1
    report = json.loads(out)
    first = report["findings"][0]
    assert not report["ok"] and (first["rule"], first["index"]) == ("id", 1)

    code, _, err = chorus(capsys, repo, "ledger", "verify", str(tmp_path / "missing.car"))
    assert code == 1 and "missing.car" in err


def test_verify_the_database_offline(repo: Path, capsys) -> None:
    # No tree head yet: sound, but nothing is covered by a signed head.
    code, out, _ = chorus(capsys, repo, "ledger", "verify", "--workers", "1")
    assert code == 0 and "ok: the log is sound" in out and "this node's database" in out
    assert "3 entries (no tree head yet)" in out
    chorus_json(capsys, repo, "ledger", "tree-head", "--sign")
    report = chorus_json(capsys, repo, "ledger", "verify")
    assert report["clean"] and report["entries"] == 4 and report["uncovered"] == 0

    # A feeds table that disagrees with the log is found, and named.
    with sqlite3.connect(repo / "ledger.sqlite") as db:
        db.execute("UPDATE feeds SET seq = seq + 5")
    code, out, err = chorus(capsys, repo, "ledger", "verify", "--workers", "1")
    assert code == 1 and "does not verify" in err
    assert any(line.startswith("index -  -  feeds: ") for line in out.splitlines()), out


def test_sync_needs_the_daemon(repo: Path, capsys) -> None:
    code, _, err = chorus(capsys, repo, "ledger", "sync", "12D3KooWExample")
    assert code == 1 and "needs the running daemon" in err


def test_every_subcommand_has_an_example(capsys) -> None:
    for args in (["status"], ["append"], ["proof", "verify"], ["verify"], ["export"]):
        with pytest.raises(SystemExit) as done:
            main(["ledger", *args, "--help"])
        assert done.value.code == 0
        assert "example:\n  chorus ledger" in capsys.readouterr().out


@pytest.mark.integration
def test_through_the_daemon(tmp_path: Path) -> None:
    node = DaemonProcess(tmp_path / "node", dht=False)
    node.cli("key", "new", "alice")
    node.start()
    try:
        written = node.cli_json("ledger", "append", "--key", "alice", "--text", "hi", "--json")
        assert written["index"] == 0 and written["seq"] == 1
        status = node.cli_json("ledger", "status", "--json")
        assert status["size"] >= 1 and status["counters"]["appended"] >= 1
        assert status["sync"] is None  # in no co-op
        assert "daemon     not running" not in node.cli("ledger", "status").stdout.decode()
        head = node.cli_json("ledger", "tree-head", "--sign", "--force", "--json")["tree_head"]
        assert head["size"] >= 1
        out_file = tmp_path / "ledger.car"
        out = node.cli("ledger", "export", "-o", str(out_file)).stdout.decode()
        assert "exported" in out and out_file.exists()
        assert not list((tmp_path / "node").glob(".ledger-export-*"))
        assert node.cli("ledger", "verify", str(out_file)).returncode == 0
        assert node.cli_json("ledger", "verify", "--json")["ok"]
        failed = node.cli("ledger", "append", "--key", "bob", "--text", "x", check=False)
        assert failed.returncode == 1
        assert failed.stderr.decode().startswith("chorus: error: no key named 'bob'")
    finally:
        node.stop()
