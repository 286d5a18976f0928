"""`chorus status`: a fresh repo and a co-op node offline, in-process (human output
and --json); the sections that degrade (a broken genesis, a locked repo); and one
run through a real daemon's API."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from cli.status import human_size
from node.identity import load_identity, peer_id_of
from node.keystore import Keystore
from node.ledger_views import parse_entry_id
from node.repo import Repo
from protocol.cid import cid_to_text, make_cid
from tests.daemons import DaemonProcess

TRACK = cid_to_text(make_cid(b"a track worth hosting"))
SECTIONS = {"time", "daemon", "node", "peers", "storage", "ledger", "coop", "wallets", "hosting"}


def ok(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> str:
    code = main(["--data", str(data), *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def ok_json(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> Any:
    return json.loads(ok(capsys, data, *args, "--json"))


def public(data: Path, name: str) -> str:
    return Keystore(data).info(name).public_hex


def b64(raw: bytes) -> dict[str, Any]:
    return {"/": {"bytes": base64.b64encode(raw).decode().rstrip("=")}}


def make_coop(capsys: pytest.CaptureFixture[str], data: Path, genesis_file: Path) -> dict:
    """A co-op created in `data` (joined), bob admitted as a worker and topped up 5c."""
    ok(capsys, data, "init")
    for name in ("ann", "till", "bob", "cat"):
        ok(capsys, data, "key", "new", name)
    made = ok_json(capsys, data, "coop", "create", "--name", "Riverside Music", "--board", "ann",
                   "--treasury", "till", "--param", "play_price=2500", "-o", str(genesis_file))
    ok(capsys, data, "member", "admit", "bob", "--class", "worker", "--as", "ann")
    ok(capsys, data, "wallet", "topup", "bob", "5c", "--as", "till")
    return made


def test_fresh_repo(tmp_path: Path, capsys) -> None:
    data = tmp_path / "node"
    ok(capsys, data, "init")
    peer_id = peer_id_of(load_identity(data))
    text = ok(capsys, data, "status")
    for fact in ("daemon      not running", peer_id, "no co-op", "none: the daemon is not running",
                 "blocks  0", "quota   none", "entries    0", "none signed yet"):
        assert fact in text, fact

    facts = ok_json(capsys, data, "status")
    assert set(facts) == SECTIONS
    assert facts["daemon"] == {"running": False, "api": None}
    assert facts["node"]["peer_id"] == peer_id and facts["node"]["addresses"] == []
    assert facts["node"]["public_key"] == public(data, "self")
    assert facts["peers"] is None and facts["coop"] is None
    assert facts["wallets"] is None and facts["hosting"] is None
    assert facts["storage"] == {"blocks": 0, "bytes": 0, "quota": None, "free": None}
    ledger = facts["ledger"]
    assert (ledger["size"], ledger["feeds"], ledger["tree_head"], ledger["counters"]) == (
        0, 0, None, None)

    # Content and a quota show up in storage, in human sizes.
    song = tmp_path / "song.ogg"
    song.write_bytes(bytes(range(256)) * 12)  # 3 KiB
    ok(capsys, data, "add", "-Q", "--cid-version", "1", str(song))  # one raw block
    config = json.loads((data / "config.json").read_text())
    (data / "config.json").write_text(json.dumps({**config, "quota": 1 << 20}))
    storage = ok_json(capsys, data, "status")["storage"]
    assert storage["blocks"] == 1 and storage["bytes"] == 3072
    assert storage["quota"] == 1 << 20 and storage["free"] == (1 << 20) - 3072
    text = ok(capsys, data, "status")
    assert "3.0 KiB (3,072 bytes)" in text and "1.0 MiB" in text and "0% used" in text


def test_coop_node(tmp_path: Path, capsys) -> None:
    data = tmp_path / "node"
    made = make_coop(capsys, data, tmp_path / "riverside.genesis")
    peer_id = peer_id_of(load_identity(data))
    bob = public(data, "bob")
    # A release by cat, a paid play by bob fetched from this node, and bob's receipt
    # for it: this node earns hosting pay.
    release = ok_json(capsys, data, "ledger", "append", "--key", "cat", "--kind", "release",
                      "--body", json.dumps({
                          "title": "First",
                          "tracks": [{"cid": TRACK, "title": "One", "duration_ms": 30_000,
                                      "size": 100, "mime": "audio/ogg"}],
                          "payees": [{"key": b64(bytes.fromhex(public(data, "cat"))),
                                      "bps": 10000}],
                      }))
    ok(capsys, data, "ledger", "append", "--key", "bob", "--kind", "play", "--body", json.dumps({
        "track": TRACK, "release": b64(parse_entry_id(release["id"])), "played_ms": 30_000,
        "hosts": [peer_id]}))
    epoch = int(time.time() * 1000) // made["params"]["epoch_ms"]
    ok(capsys, data, "ledger", "append", "--key", "bob", "--kind", "receipt", "--body",
       json.dumps({"host": peer_id, "epoch": epoch, "bytes": 4096, "roots": [TRACK]}))
    ok(capsys, data, "ledger", "tree-head", "--sign")
    tally = ok_json(capsys, data, "ledger", "tally")
    host_pay = tally["epochs"][str(epoch)]["host_pay"][peer_id]
    assert host_pay > 0

    facts = ok_json(capsys, data, "status")
    assert set(facts) == SECTIONS
    coop = facts["coop"]
    assert (coop["id"], coop["name"], coop["board"], coop["treasury"]) == (
        made["id"], "Riverside Music", 1, 1)
    assert coop["members"] == 1 and coop["anomalies"] == 0 and coop["entries"] == tally["entries"]
    # The keys with a wallet, earnings or a membership: bob (topped up, a member) and
    # cat (a payee); not ann (board) or till (treasury).
    wallet, payee = facts["wallets"]
    assert payee["name"] == "cat" and payee["earned"] == tally["earnings"][public(data, "cat")] > 0
    assert payee["balance"] == 0 and payee["member"] is None
    assert wallet["name"] == "bob" and wallet["wallet"] == bob and wallet["member"] == "worker"
    assert wallet["balance"] == tally["balances"][bob] == 5_000_000 - 2500
    assert wallet["topped_up"] == 5_000_000 and len(wallet["tracks"]) == 1
    assert facts["hosting"] == {
        "peer_id": peer_id, "earned": host_pay, "bytes": 4096,
        "epochs": [{"epoch": epoch, "pay": host_pay, "bytes": 4096}],
    }
    ledger = facts["ledger"]
    head = ledger["tree_head"]
    assert ledger["size"] == tally["entries"] == 6
    assert head["index"] == ledger["size"] - 1 and ledger["uncovered"] == 0
    assert 0 <= head["age_ms"] < 60_000 and facts["time"] - head["time"] == head["age_ms"]

    text = ok(capsys, data, "status")
    for fact in ("not running", f"Riverside Music  ({made['id']})", "1 member", "bob",
                 "worker", "4,997,500 µc", "5,000,000 µc", f"{host_pay:,} µc for 4.0 KiB",
                 "over 1 epoch", peer_id, head["id"], "s ago)", "0 entries after the tree head"):
        assert fact in text, fact
    assert "till" not in text  # the treasury key holds no wallet

    # --as shows one key's wallet, even an empty one; a name that is no key is refused.
    (till,) = ok_json(capsys, data, "status", "--as", "till")["wallets"]
    assert (till["name"], till["balance"], till["member"]) == ("till", 0, None)
    assert "till" in ok(capsys, data, "status", "--as", "till")
    assert main(["--data", str(data), "status", "--as", "nobody"]) == 1
    assert "no key named 'nobody'" in capsys.readouterr().err


def test_sections_degrade(tmp_path: Path, capsys) -> None:
    data = tmp_path / "node"
    make_coop(capsys, data, tmp_path / "riverside.genesis")

    # The repo locked by another command: what needs it says so; the co-op is read
    # from its files, which need no lock.
    with Repo.open(data):
        facts = ok_json(capsys, data, "status")
        text = ok(capsys, data, "status")
    for name in ("storage", "ledger", "wallets", "hosting"):
        assert "error" in facts[name], name
    assert facts["node"]["peer_id"] == peer_id_of(load_identity(data))  # a file, no lock
    assert facts["coop"]["name"] == "Riverside Music" and "members" not in facts["coop"]
    assert "unavailable: " in text and "Riverside Music" in text

    # A genesis file gone missing: the co-op's sections say why, the rest stands.
    (data / "genesis.bin").unlink()
    facts = ok_json(capsys, data, "status")
    assert "is missing" in facts["coop"]["error"]
    assert facts["wallets"] == facts["hosting"] == facts["coop"]
    assert facts["ledger"]["size"] == 2 and facts["storage"]["blocks"] == 0
    text = ok(capsys, data, "status")
    assert "unavailable: " in text and "is missing" in text and "entries    2" in text

    # No repo at all is an error.
    assert main(["--data", str(tmp_path / "none"), "status"]) == 1
    assert "chorus init" in capsys.readouterr().err


def test_help_and_sizes(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["status", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "example:\n  chorus status" in out and "--as NAME" in out and "--json" in out
    assert [human_size(n) for n in (None, 0, 1023, 1024, 1536, 5 << 30)] == [
        "-", "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 GiB"]


@pytest.mark.integration
def test_through_the_daemon(tmp_path: Path, capsys) -> None:
    data = tmp_path / "node"
    made = make_coop(capsys, data, tmp_path / "riverside.genesis")
    bob = public(data, "bob")
    song = tmp_path / "song.ogg"
    song.write_bytes(b"la" * 5000)
    ok(capsys, data, "add", "-Q", "--cid-version", "1", str(song))  # one raw block
    node = DaemonProcess(data, dht=False).start()
    try:
        facts = node.cli_json("status", "--json")
        text = node.cli("status").stdout.decode()
        ledger_api = node.chorus_api("GET", "/ledger")
    finally:
        node.stop()
    assert set(facts) == SECTIONS
    assert facts["daemon"] == {"running": True, "api": node.api}
    assert facts["node"]["peer_id"] == node.peer_id
    assert node.addr in facts["node"]["addresses"]
    assert facts["node"]["version"]
    assert facts["peers"]["connected"] == 0 and isinstance(facts["peers"]["top"], list)
    assert facts["storage"]["blocks"] == 1 and facts["storage"]["bytes"] == 10_000
    ledger = facts["ledger"]
    assert ledger["size"] == ledger_api["size"] == 2 and ledger["root"] == ledger_api["root"]
    assert ledger["counters"] is not None and ledger["pending"] is not None
    assert facts["coop"]["id"] == made["id"] and facts["coop"]["members"] == 1
    (wallet,) = facts["wallets"]
    assert (wallet["name"], wallet["wallet"], wallet["balance"], wallet["member"]) == (
        "bob", bob, 5_000_000, "worker")
    assert facts["hosting"] == {"peer_id": node.peer_id, "earned": 0, "bytes": 0, "epochs": []}
    for fact in ("daemon      running", node.api, node.peer_id, "Riverside Music",
                 "0 connected, 0 known", "5,000,000 µc", "counters"):
        assert fact in text, fact
