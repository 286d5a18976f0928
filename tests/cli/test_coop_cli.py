"""`chorus coop|member|wallet|vote` and `chorus ledger tally|audit`: a co-op created,
joined, its members admitted, wallets topped up, a vote held and the books audited,
all offline in-process; joining by CID from a node (an in-process HTTP server, then a
real daemon's API and gateway); the refusals; and one run through a daemon's API."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from node.coop import genesis_json, read_genesis
from node.keystore import Keystore
from node.ledger_views import parse_entry_id
from protocol.cid import cid_to_text, make_cid
from tests.daemons import DaemonProcess
from tests.node.test_coop import CoopServer, no_coop_answer, validate

TRACK = cid_to_text(make_cid(b"the first track"))


def chorus(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data", str(data), *args])
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> str:
    code, out, err = chorus(capsys, data, *args)
    assert code == 0, err
    return out


def ok_json(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> Any:
    return json.loads(ok(capsys, data, *args, "--json"))


def refused(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> str:
    code, out, err = chorus(capsys, data, *args)
    assert code == 1, (out, err)
    assert err.startswith("chorus: error: ") and err.count("\n") == 1, err
    return err


def b64(raw: bytes) -> dict[str, Any]:
    return {"/": {"bytes": base64.b64encode(raw).decode().rstrip("=")}}


def public(data: Path, name: str) -> str:
    return Keystore(data).info(name).public_hex


@pytest.fixture
def founded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, dict]:
    """A repo with keys ann, ben (board), till (treasury), bob, cat, dan, art; the co-op
    created there with a lower play price (and so joined). Yields (repo, file, genesis)."""
    data = tmp_path / "founder"
    ok(capsys, data, "init")
    for name in ("ann", "ben", "till", "bob", "cat", "dan", "art"):
        ok(capsys, data, "key", "new", name)
    genesis_file = tmp_path / "riverside.genesis"
    made = ok_json(
        capsys, data, "coop", "create", "--name", "Riverside Music", "--board", "ann",
        "--board", "ben", "--treasury", "till", "--param", "play_price=2500",
        "-o", str(genesis_file),
    )
    return data, genesis_file, made


def test_create_show_and_join(founded, tmp_path: Path, capsys) -> None:
    data, genesis_file, made = founded
    validate("Genesis", {k: v for k, v in made.items() if k not in ("file", "joined")})
    assert made["joined"] is True and made["file"] == str(genesis_file)
    assert made["name"] == "Riverside Music" and made["params"]["play_price"] == 2500
    assert made["board"] == sorted([public(data, "ann"), public(data, "ben")])
    assert made["treasury"] == [public(data, "till")]
    assert genesis_file.read_bytes() == (data / "genesis.bin").read_bytes()
    assert json.loads((data / "config.json").read_text())["coop"] == made["id"]

    shown = ok_json(capsys, data, "coop", "show")
    assert shown == {k: v for k, v in made.items() if k not in ("file", "joined")}
    assert ok_json(capsys, data, "coop", "show", "--genesis", str(genesis_file)) == shown
    text = ok(capsys, data, "coop", "show")
    assert made["id"] in text and "(ann)" in text and "play_price" in text

    # A member's node joins at init; another joins an existing repo.
    member = tmp_path / "member"
    joined = ok_json(capsys, member, "init", "--coop", str(genesis_file))
    assert joined["Coop"] == made["id"]
    assert (member / "genesis.bin").read_bytes() == genesis_file.read_bytes()
    assert ok_json(capsys, member, "coop", "show")["id"] == made["id"]
    later = tmp_path / "later"
    ok(capsys, later, "init")
    assert "Riverside Music" in ok(capsys, later, "coop", "join", str(genesis_file))
    assert ok_json(capsys, later, "coop", "show")["id"] == made["id"]

    # The founder's repo stays in its co-op when it creates another one.
    second = ok_json(capsys, data, "coop", "create", "--name", "Second", "--board", "ann",
                     "--treasury", public(data, "bob"), "-o", str(tmp_path / "second.genesis"))
    assert second["joined"] is False and second["treasury"] == [public(data, "bob")]
    assert ok_json(capsys, data, "coop", "show")["id"] == made["id"]
    err = refused(capsys, data, "coop", "join", str(tmp_path / "second.genesis"))
    assert "already a node of co-op" in err


def test_genesis_refusals(founded, tmp_path: Path, capsys) -> None:
    data, genesis_file, _ = founded
    bad = tmp_path / "bad.genesis"
    bad.write_bytes(b"not a genesis at all")
    fresh = tmp_path / "fresh"
    err = refused(capsys, fresh, "init", "--coop", str(bad))
    assert "not a valid co-op genesis" in err and str(bad) in err
    assert not (fresh / "config.json").exists()  # nothing was created
    err = refused(capsys, fresh, "init", "--coop", str(tmp_path / "missing.genesis"))
    assert "cannot read the genesis" in err
    tampered = bytearray(genesis_file.read_bytes())
    tampered[-3] ^= 0x40
    bad.write_bytes(bytes(tampered))
    assert "BadGenesisSignature" in refused(capsys, fresh, "init", "--coop", str(bad))

    out = str(tmp_path / "x.genesis")
    for args, cause in [
        (["--param", "play_prize=10"], "unknown parameter 'play_prize'"),
        (["--param", "play_price=1.5"], "parameter play_price must be an integer"),
        (["--param", "quorum_bps=10001"], "quorum_bps = 10001 is outside 0..10000"),
        (["--param", "play_price"], "must be NAME=VALUE"),
        (["--board", "nobody"], "no key named 'nobody'"),
        (["--treasury", "abc"], "neither a 64-hex public key nor a key"),
    ]:
        base = ["coop", "create", "--name", "X", "-o", out, "--no-join"]
        if "--board" not in args:
            base += ["--board", "ann"]
        if "--treasury" not in args:
            base += ["--treasury", "till"]
        assert cause in refused(capsys, data, *base, *args), args
    assert not Path(out).exists()
    ok(capsys, data, "coop", "create", "--name", "X", "--board", "ann", "--treasury", "till",
       "-o", out, "--no-join")
    assert "exists" in refused(capsys, data, "coop", "create", "--name", "X", "--board", "ann",
                               "--treasury", "till", "-o", out, "--no-join")
    # Without a co-op, the co-op's commands say how to join one.
    plain = tmp_path / "plain"
    ok(capsys, plain, "init")
    assert "coop join" in refused(capsys, plain, "ledger", "tally")
    assert "coop join" in refused(capsys, plain, "member", "ls")


def test_members_wallets_votes_tally_and_audit(founded, tmp_path: Path, capsys) -> None:
    data, genesis_file, made = founded
    keys = {name: public(data, name) for name in ("ann", "ben", "till", "bob", "cat", "dan")}

    # Membership: the board admits; others cannot.
    admitted = ok_json(capsys, data, "member", "admit", "bob", "--class", "worker", "--as", "ann")
    assert admitted["kind"] == "member.admit" and admitted["counted"] is True
    ok(capsys, data, "member", "admit", keys["ann"], "--class", "worker", "--as", "ben")
    ok(capsys, data, "member", "admit", "dan", "--class", "listener", "--as", "ben")
    assert "not on the board" in refused(capsys, data, "member", "admit", "cat", "--class",
                                          "artist", "--as", "bob")
    members = ok_json(capsys, data, "member", "ls")["members"]
    assert {m["name"]: m["class"] for m in members} == {
        "ann": "worker", "bob": "worker", "dan": "listener"}

    # Money: top-ups by the treasury, in µc or whole credits; a transfer.
    topped = ok_json(capsys, data, "wallet", "topup", "bob", "5c", "--as", "till")
    assert topped["balance"] == 5_000_000 and topped["counted"] is True
    assert "balance 5,002,500 µc" in ok(capsys, data, "wallet", "topup", keys["bob"], "2_500",
                                          "--as", "till")
    ok(capsys, data, "wallet", "transfer", "dan", "1c", "--as", "bob")
    assert "holds 4,002,500 µc" in refused(capsys, data, "wallet", "transfer", "dan", "5c",
                                           "--as", "bob")
    # A top-up by a key outside the treasury is refused; forced, it is an anomaly.
    err = refused(capsys, data, "wallet", "topup", "bob", "1c", "--as", "bob")
    assert "not in the treasury" in err and "--force" in err
    code, out, err = chorus(capsys, data, "wallet", "topup", "bob", "1c", "--as", "bob",
                            "--force", "--json")
    assert code == 1 and "topup_unauthorised" in err
    rogue = json.loads(out)
    assert rogue["counted"] is False and rogue["balance"] == 4_002_500
    assert rogue["anomalies"][0]["code"] == "topup_unauthorised"
    for bad in ("1.5c", "0", "abc", "2000000000c"):
        with pytest.raises(SystemExit) as usage:
            main(["--data", str(data), "wallet", "topup", "bob", bad, "--as", "till"])
        assert usage.value.code == 2 and "amount" in capsys.readouterr().err

    # A release (written as any entry is) and plays: stream to own at 2500 µc.
    release = ok_json(capsys, data, "ledger", "append", "--key", "cat", "--kind", "release",
                      "--body", json.dumps({
                          "title": "First",
                          "tracks": [{"cid": TRACK, "title": "One", "duration_ms": 30_000,
                                      "size": 100, "mime": "audio/ogg"}],
                          "payees": [{"key": b64(bytes.fromhex(keys["cat"])), "bps": 10000}],
                      }))
    release_id = parse_entry_id(release["id"])
    play = json.dumps({"track": TRACK, "release": b64(release_id), "played_ms": 30_000,
                       "hosts": ["12D3KooWHost"]})
    for _ in range(3):
        ok(capsys, data, "ledger", "append", "--key", "bob", "--kind", "play", "--body", play)
    wallet = ok_json(capsys, data, "wallet", "show", "bob")
    validate("Wallet", wallet)
    assert wallet["balance"] == 4_002_500 - 2500 - 5000 - 10000
    assert wallet["plays_to_own"] == 9 and wallet["member"] == "worker"
    (track,) = wallet["tracks"]
    assert (track["track"], track["paid"], track["next_price"], track["owned"]) == (
        TRACK, 3, 20000, False)
    shown = ok(capsys, data, "wallet", "show", "bob")
    assert "3/9" in shown and "20,000 µc" in shown
    assert ok_json(capsys, data, "wallet", "show", "cat")["earned"] == 17500 * 7000 // 10000

    # A vote: cat is admitted after it opens, so cat's ballot does not count.
    proposal = ok_json(capsys, data, "vote", "propose", "--title", "Hosting share",
                       "--text", "Raise it?", "--option", "yes", "--option", "no",
                       "--opens", "now", "--closes", "+1h", "--class", "worker",
                       "--class", "artist", "--as", "ann")
    pid = proposal["id"]
    time.sleep(0.01)
    ok(capsys, data, "member", "admit", "cat", "--class", "artist", "--as", "ann")
    assert "votes 'no'" in ok(capsys, data, "vote", "cast", pid, "no", "--as", "bob")
    ok(capsys, data, "vote", "cast", pid, "0", "--as", "bob")  # changed: the last counts
    ok(capsys, data, "vote", "cast", pid, "YES", "--as", "ann")
    code, out, err = chorus(capsys, data, "vote", "cast", pid, "no", "--as", "cat")
    assert code == 1 and "ballot_ineligible" in err and "was written" in err
    assert "not a member of a voting class" in refused(capsys, data, "vote", "cast", pid, "no",
                                                        "--as", "dan")
    assert "not an option" in refused(capsys, data, "vote", "cast", pid, "maybe", "--as", "ann")
    assert "not a member; only members propose" in refused(
        capsys, data, "vote", "propose", "--title", "t", "--option", "a", "--option", "b",
        "--closes", "+1h", "--as", "till")
    results = ok_json(capsys, data, "vote", "tally")
    validate("Proposals", results)
    (result,) = results["proposals"]
    assert result["id"] == pid
    assert (result["eligible"], result["counted"], result["totals"]) == (2, 2, [2, 0])
    assert result["by_class"] == {"artist": [0, 0], "worker": [2, 0]}
    assert result["quorum_met"] is True and result["winner"] == 0
    assert ok_json(capsys, data, "vote", "tally", pid)["proposals"] == [result]
    show = ok_json(capsys, data, "vote", "show", pid)
    assert show["result"] == {k: v for k, v in result.items() if k != "id"}
    assert show["proposal"]["body"]["text"] == "Raise it?"
    text = ok(capsys, data, "vote", "show", pid)
    assert "Hosting share" in text and "winner    0: yes" in text

    # The tally and the audit of the node's database.
    tally = ok_json(capsys, data, "ledger", "tally")
    validate("Tally", tally)
    assert tally["coop"] == made["id"]
    assert tally["balances"][keys["bob"]] == wallet["balance"]
    assert tally["balances"][keys["dan"]] == 1_000_000
    assert tally["totals"]["paid_plays"] == 17500
    assert tally["earnings"] == {keys["cat"]: 12250}
    assert tally["members"][keys["cat"]] == "artist"
    codes = sorted(a["code"] for a in tally["anomalies"])
    assert codes == ["ballot_ineligible", "topup_unauthorised"]
    (epoch,) = tally["epochs"]
    assert ok_json(capsys, data, "ledger", "tally", "--epoch", epoch)["epochs"] == tally["epochs"]
    assert ok_json(capsys, data, "ledger", "tally", "--epoch", "0")["epochs"]["0"][
        "paid_plays"] == 0
    printed = ok(capsys, data, "ledger", "tally")
    assert "topup_unauthorised" in printed and "17,500 µc" in printed and "Hosting share" in printed

    audit = ok_json(capsys, data, "ledger", "audit", "--workers", "1")
    assert audit["ok"] and audit["verify"]["ok"] and audit["coop"] == made["id"]
    assert audit["tally"] == tally and all(c["ok"] for c in audit["invariants"])
    assert sorted(a["code"] for a in audit["anomalies"]) == codes
    assert "ok: the log verifies" in ok(capsys, data, "ledger", "audit", "--workers", "1")

    # An export, audited elsewhere with the genesis file: the same figures.
    ok(capsys, data, "ledger", "tree-head", "--sign")
    export = tmp_path / "ledger.car"
    ok(capsys, data, "ledger", "export", "-o", str(export))
    tally = ok_json(capsys, data, "ledger", "tally")  # the tree head is one more entry
    elsewhere = tmp_path / "auditor"
    audited = ok_json(capsys, elsewhere, "ledger", "audit", str(export), "--genesis",
                      str(genesis_file), "--workers", "1")
    assert audited["ok"] and audited["tally"] == tally
    other = tmp_path / "other.genesis"
    ok(capsys, data, "coop", "create", "--name", "Other", "--board", "ann", "--treasury",
       "till", "-o", str(other), "--no-join")
    assert "export of co-op" in refused(capsys, elsewhere, "ledger", "audit", str(export),
                                        "--genesis", str(other))
    # A tampered export fails the audit (exit 1), the figures still shown.
    raw = bytearray(export.read_bytes())
    spot = raw.find(b"Raise it?")
    raw[spot] ^= 0x01
    export.write_bytes(bytes(raw))
    code, out, _ = chorus(capsys, elsewhere, "ledger", "audit", str(export), "--genesis",
                          str(genesis_file), "--workers", "1", "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"] and report["verify"]["errors"] >= 1


def test_leave(founded, capsys) -> None:
    data, _, _ = founded
    ok(capsys, data, "member", "admit", "bob", "--class", "listener", "--as", "ann")
    assert "neither on the board" in refused(capsys, data, "member", "leave", "bob", "--as",
                                             "cat")
    assert "no longer a member" in ok(capsys, data, "member", "leave", "bob", "--as", "bob")
    assert ok_json(capsys, data, "member", "ls")["members"] == []
    assert "is not a member" in refused(capsys, data, "member", "leave", "bob", "--as", "ann")


@pytest.fixture
def server() -> Iterator[CoopServer]:
    """A stand-in member node: answers GET /api/chorus/v1/coop with what it is told."""
    running = CoopServer()
    thread = threading.Thread(target=running.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.httpd.shutdown()
        running.httpd.server_close()
        thread.join(5)


def test_join_by_cid_from_a_node(founded, server: CoopServer, tmp_path: Path, capsys) -> None:
    data, genesis_file, made = founded
    cid = made["id"]
    server.serve(200, genesis_json(read_genesis(genesis_file)))

    member = tmp_path / "member"
    joined = ok_json(capsys, member, "init", "--coop", cid, "--from", server.url)
    assert joined["Coop"] == cid
    assert (member / "genesis.bin").read_bytes() == genesis_file.read_bytes()
    assert ok_json(capsys, member, "coop", "show")["id"] == cid
    later = tmp_path / "later"
    ok(capsys, later, "init")
    out = ok(capsys, later, "coop", "join", cid, "--from", server.url)
    assert "Riverside Music" in out and cid in out
    assert json.loads((later / "config.json").read_text())["coop"] == cid
    assert server.paths == ["/api/chorus/v1/coop"] * 2

    # Refusals leave no repo behind (init) or leave the repo in no co-op (join).
    fresh, plain = tmp_path / "fresh", tmp_path / "plain"
    ok(capsys, plain, "init")
    other = ok_json(capsys, data, "coop", "create", "--name", "Other", "--board", "ann",
                    "--treasury", "till", "-o", str(tmp_path / "other.genesis"), "--no-join")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for answer, source, cause in [
        ((200, genesis_json(read_genesis(tmp_path / "other.genesis"))), server.url,
         f"serves the genesis of co-op {other['id']}, not of {cid}"),
        ((409, no_coop_answer()), server.url, "is in no co-op"),
        ((200, b"<html>hello</html>"), server.url, "did not answer with JSON"),
        ((200, {"data": "AAAA"}), server.url, "served is not a valid co-op genesis"),
        ((200, {}), dead, f"cannot reach {dead}/api/chorus/v1/coop"),
    ]:
        server.serve(*answer)
        assert cause in refused(capsys, fresh, "init", "--coop", cid, "--from", source)
        assert not fresh.exists()
        assert cause in refused(capsys, plain, "coop", "join", cid, "--from", source)
        assert "coop" not in json.loads((plain / "config.json").read_text())
    # A CID needs --from; --from needs a CID.
    err = refused(capsys, fresh, "init", "--coop", cid)
    assert f"{cid} is a co-op CID, not a genesis file: pass --from URL" in err
    assert "pass --from URL" in refused(capsys, plain, "coop", "join", cid)
    assert "--from URL needs --coop CID" in refused(capsys, fresh, "init", "--from", server.url)
    err = refused(capsys, plain, "coop", "join", str(genesis_file), "--from", server.url)
    assert "is not a co-op CID" in err
    assert not fresh.exists()


@pytest.mark.integration
def test_join_by_cid_from_a_running_daemon(tmp_path: Path, capsys) -> None:
    data = tmp_path / "founder"
    ok(capsys, data, "init")
    for name in ("ann", "till"):
        ok(capsys, data, "key", "new", name)
    made = ok_json(capsys, data, "coop", "create", "--name", "Daemon Co-op", "--board", "ann",
                   "--treasury", "till", "-o", str(tmp_path / "d.genesis"))
    other = ok_json(capsys, data, "coop", "create", "--name", "Other", "--board", "ann",
                    "--treasury", "till", "-o", str(tmp_path / "o.genesis"), "--no-join")
    node = DaemonProcess(data, dht=False, gateway="127.0.0.1:0").start()
    try:
        assert node.gateway
        # From the node's API, at init; from its public gateway, into an existing repo.
        member = tmp_path / "member"
        joined = ok_json(capsys, member, "init", "--coop", made["id"], "--from", node.api)
        assert joined["Coop"] == made["id"]
        later = tmp_path / "later"
        ok(capsys, later, "init")
        ok(capsys, later, "coop", "join", made["id"], "--from", node.gateway)
        err = refused(capsys, tmp_path / "wrong", "init", "--coop", other["id"], "--from",
                      node.gateway)
        assert made["id"] in err and other["id"] in err
        assert not (tmp_path / "wrong").exists()
    finally:
        node.stop()
    for repo in (member, later):
        assert (repo / "genesis.bin").read_bytes() == (data / "genesis.bin").read_bytes()
        assert ok_json(capsys, repo, "coop", "show")["id"] == made["id"]


def test_every_subcommand_has_an_example(capsys) -> None:
    for args in (["coop", "create"], ["coop", "show"], ["coop", "join"], ["member", "admit"],
                 ["member", "leave"], ["member", "ls"], ["wallet", "topup"], ["wallet", "show"],
                 ["wallet", "transfer"], ["vote", "propose"], ["vote", "cast"],
                 ["vote", "show"], ["vote", "tally"], ["ledger", "tally"], ["ledger", "audit"]):
        with pytest.raises(SystemExit) as done:
            main([*args, "--help"])
        assert done.value.code == 0
        assert f"example:\n  chorus {args[0]}" in capsys.readouterr().out, args


@pytest.mark.integration
def test_through_the_daemon(tmp_path: Path, capsys) -> None:
    data = tmp_path / "node"
    ok(capsys, data, "init")
    for name in ("ann", "till", "bob"):
        ok(capsys, data, "key", "new", name)
    made = ok_json(capsys, data, "coop", "create", "--name", "Daemon Co-op", "--board", "ann",
                   "--treasury", "till", "-o", str(tmp_path / "d.genesis"))
    bob = public(data, "bob")
    node = DaemonProcess(data, dht=False).start()
    try:
        assert node.chorus_api("GET", "/node")["coop"]["genesis"] == made["id"]
        assert node.chorus_api("GET", "/coop")["id"] == made["id"]
        out = node.cli("wallet", "topup", "bob", "3c", "--as", "till").stdout.decode()
        assert "balance 3,000,000 µc" in out
        node.cli("member", "admit", "bob", "--class", "listener", "--as", "ann")
        tally = node.cli_json("ledger", "tally", "--json")
        validate("Tally", tally)
        assert tally["balances"] == {bob: 3_000_000} and tally["members"] == {bob: "listener"}
        assert node.chorus_api("GET", "/tally") == tally
        wallet = node.chorus_api("GET", f"/wallets/{bob}")
        validate("Wallet", wallet)
        assert wallet["balance"] == 3_000_000
        assert node.cli_json("wallet", "show", "bob", "--json") == wallet
        assert node.chorus_api("GET", "/proposals") == {"proposals": []}
        rogue = node.cli("wallet", "topup", "bob", "1c", "--as", "bob", "--force", check=False)
        assert rogue.returncode == 1 and b"topup_unauthorised" in rogue.stderr
        audit = node.cli("ledger", "audit", "--json")
        report = json.loads(audit.stdout)
        assert audit.returncode == 0 and report["ok"]
        assert report["tally"]["balances"] == {bob: 3_000_000}
        assert [a["code"] for a in report["anomalies"]] == ["topup_unauthorised"]
        joined = node.cli("coop", "join", str(tmp_path / "d.genesis"), check=False)
        assert joined.returncode == 1 and b"stop it" in joined.stderr
    finally:
        node.stop()
    # A repo whose genesis file went missing does not start.
    (data / "genesis.bin").unlink()
    code, _, err = chorus(capsys, data, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--http",
                          "127.0.0.1:0", "--no-dht")
    assert code == 1 and "is missing" in err


def test_amounts_and_times() -> None:
    from cli.coop import amount, parse_time

    assert amount("5c") == 5_000_000 and amount("2_500") == 2500 and amount(" 7 ") == 7
    now, hour = 1_800_000_000_000, 3_600_000
    assert parse_time("now", now=now, base=0) == now
    assert parse_time("+1h", now=now, base=now + 5) == now + 5 + hour
    assert parse_time("+7d", now=now, base=now) == now + 7 * 24 * hour
    january = 1_800_000_000_000  # 2027-01-15T08:00 UTC
    assert parse_time("2027-01-15T08:00Z", now=now, base=now) == january
    assert parse_time("2027-01-15T08:00", now=now, base=now) == january  # naive: UTC
    assert parse_time("1970-01-01T01:00:00+01:00", now=now, base=now) == 0
    assert parse_time("1234", now=now, base=now) == 1234
    for bad in ("tomorrow", "+1y", "-1h", "2027-13-01"):
        with pytest.raises(ValueError, match="is not a time"):
            parse_time(bad, now=now, base=now)
