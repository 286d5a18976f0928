"""The web app's API (node/web_api.py) and files (node/web_ui.py) on a real daemon in
a co-op made offline: releases, keys, plays the page reports (recorded by the node,
once per session, at the co-op's threshold), ballots, refusals, and who serves `/`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from node.chorus_api import API_PREFIX, api_description
from node.keystore import Keystore
from node.play_sessions import MAX_PLAYBACK_RATE, PlaySessions, SessionConflict, credit
from node.sample_audio import synth_track
from tests.daemons import DaemonProcess, init_in_coop, wait_for
from tests.node.test_auth import bearer, request, token_of

#: No tree heads while the tests run (each would be an entry of the node's own feed).
QUIET = ["--tree-head-interval", "0"]
KEYS = ("board", "till", "artist", "listener", "fan")


@dataclass
class WebCoop:
    """A daemon in a co-op whose plays count after `count_after_ms`, with a release."""

    node: DaemonProcess
    keys: dict[str, str]  # name -> public key hex
    release: dict[str, Any]  # what `chorus release publish --json` printed

    @property
    def token(self) -> str:
        return token_of(self.node)

    def post(self, path: str, body: Any, *, token: str | None = "", raw: bytes | None = None):
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers |= bearer(token or self.token)
        data = raw if raw is not None else json.dumps(body).encode()
        return request(self.node.api, "POST", API_PREFIX + path, headers=headers, body=data)

    def get(self, path: str) -> Any:
        answer = request(self.node.api, "GET", API_PREFIX + path)
        assert answer.status == 200, (path, answer.status, answer.body)
        return answer.json()


@contextmanager
def web_coop(tmp: Path, *, count_after_ms: int = 1000, seconds: tuple[float, ...] = (3.0, 4.0),
             gateway: bool = False) -> Iterator[WebCoop]:
    """Keys made in the repo, `chorus coop create --param count_after_ms=...` (which
    joins it), the daemon started, the artist and listeners admitted, the listener
    topped up, and a release of short synthesised tracks published by the artist."""
    node = DaemonProcess(tmp / "node", dht=False, extra=QUIET,
                         gateway="127.0.0.1:0" if gateway else None)
    store = Keystore(node.data)
    keys = {name: store.new(name).public_hex for name in KEYS}
    node.cli("coop", "create", "--name", "Web Co-op", "--board", "board", "--treasury", "till",
             "--param", f"count_after_ms={count_after_ms}", "-o", str(tmp / "web.genesis"))
    album = tmp / "album"
    album.mkdir()
    for number, length in enumerate(seconds, 1):
        (album / f"{number:02d} Song {number}.wav").write_bytes(
            synth_track(f"web song {number}", length))
    node.start()
    try:
        for name, cls in (("artist", "artist"), ("listener", "listener"), ("fan", "listener")):
            node.cli("member", "admit", keys[name], "--class", cls, "--as", "board")
        node.cli("wallet", "topup", keys["listener"], "1c", "--as", "till")
        release = node.cli_json("release", "publish", str(album), "--title", "Loopback Songs",
                                "--as", "artist", "--json")
        yield WebCoop(node, keys, release)
    finally:
        node.stop()


@pytest.fixture(scope="module")
def coop(tmp_path_factory) -> Iterator[WebCoop]:
    with web_coop(tmp_path_factory.mktemp("web"), gateway=True) as made:
        yield made


DOCUMENT = api_description(None)[1]  # type: ignore[arg-type]


def conforms(method: str, path: str, value: Any) -> Any:
    """`value` checked against the OpenAPI document's 200 answer of `method path`."""
    operation = DOCUMENT["paths"][API_PREFIX + path][method.lower()]
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **operation["responses"]["200"]["content"]["application/json"]["schema"],
        "components": DOCUMENT["components"],
    }
    jsonschema_rs.validator_for(schema).validate(value)
    return value


def error_of(answer, status: int, code: str) -> str:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]["message"]


def progress(coop: WebCoop, session: str, played_ms: int, *, track: int = 0,
             as_: str = "listener") -> dict[str, Any]:
    answer = coop.post("/plays/progress", {
        "as": as_, "release": coop.release["id"], "track": coop.release["tracks"][track]["cid"],
        "played_ms": played_ms, "session": session,
    })
    assert answer.status == 200, answer.body
    return conforms("POST", "/plays/progress", answer.json())


def plays_in_ledger(coop: WebCoop, author: str) -> list[dict[str, Any]]:
    entries = coop.get("/ledger/log?limit=1000")["entries"]
    return [e for e in entries if e["kind"] == "play" and e["author"] == author]


# -- the session rules, without a daemon ----------------------------------------------------


def test_credit_is_monotonic_and_capped_by_duration_and_real_time() -> None:
    assert credit(0, 5000, 10_000, 0.0) == 0  # a first report claims nothing yet
    assert credit(0, 5000, 10_000, 1.0) == 1000 * MAX_PLAYBACK_RATE
    assert credit(0, 5000, 10_000, 10.0) == 5000
    assert credit(5000, 1000, 10_000, 20.0) == 5000  # never backwards
    assert credit(5000, 99_000, 10_000, 60.0) == 10_000  # never past the track


def test_sessions_bind_to_one_play_and_are_bounded() -> None:
    sessions = PlaySessions(max_sessions=2)
    one = sessions.open("session-1", b"k" * 32, "rel", "trackA", 4000, 100.0, {"peer": 5})
    assert sessions.open("session-1", b"k" * 32, "rel", "trackA", 4000, 101.0, {}) is one
    assert one.counters == {"peer": 5} and one.started == 100.0
    assert sessions.report(one, 3000, 100.5) == 2000
    assert sessions.report(one, 1000, 102.0) == 2000
    assert sessions.report(one, 9000, 110.0) == 4000
    with pytest.raises(SessionConflict, match="trackA"):
        sessions.open("session-1", b"k" * 32, "rel", "trackB", 4000, 103.0, {})
    with pytest.raises(SessionConflict):
        sessions.open("session-1", b"x" * 32, "rel", "trackA", 4000, 103.0, {})
    sessions.open("session-2", b"k" * 32, "rel", "trackB", 4000, 104.0, {})
    sessions.open("session-1", b"k" * 32, "rel", "trackA", 4000, 105.0, {})  # touched
    sessions.open("session-3", b"k" * 32, "rel", "trackB", 4000, 106.0, {})
    assert len(sessions) == 2 and sessions.get("session-2") is None
    assert sessions.get("session-1") is one


# -- reads ------------------------------------------------------------------------------------


@pytest.mark.integration
def test_releases_and_keys(coop: WebCoop) -> None:
    (release,) = conforms("GET", "/releases", coop.get("/releases"))["releases"]
    assert release["id"] == coop.release["id"] and release["title"] == "Loopback Songs"
    assert release["artist"] == coop.keys["artist"]
    assert release["payees"] == [{"key": coop.keys["artist"], "bps": 10000}]
    assert [t["title"] for t in release["tracks"]] == ["01 Song 1", "02 Song 2"]
    first = release["tracks"][0]
    assert set(first) == {"cid", "title", "duration_ms", "size", "mime"}
    assert (first["duration_ms"], first["mime"]) == (3000, "audio/wav")
    assert release["duration_ms"] == 7000
    audio = request(coop.node.api, "GET", f"/ipfs/{first['cid']}", headers={"Range": "bytes=0-99"})
    assert audio.status == 206 and len(audio.body) == 100

    keys = conforms("GET", "/keys", coop.get("/keys"))["keys"]
    assert keys[0]["name"] == "self"
    assert {k["name"]: k["public_key"] for k in keys[1:]} == coop.keys
    assert all(set(k) == {"name", "public_key"} for k in keys)
    # The public listener serves the same reads (and never the web app itself).
    public = request(coop.node.gateway, "GET", f"{API_PREFIX}/releases")
    assert public.status == 200 and public.json()["releases"][0]["id"] == release["id"]


# -- plays --------------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_play_is_recorded_once_when_progress_crosses_the_threshold(coop: WebCoop) -> None:
    listener = coop.keys["listener"]
    balance = coop.get(f"/wallets/{listener}")["balance"]
    start = progress(coop, "session-one", 0)
    assert start["recorded"] is False and start["entry"] is None
    assert (start["price"], start["n"], start["plays_to_own"]) == (2000, 0, 9)
    assert start["threshold_ms"] == 1000 and start["duration_ms"] == 3000
    assert start["balance"] == balance and start["listener"] == listener

    time.sleep(0.4)
    below = progress(coop, "session-one", 900)
    assert below["recorded"] is False and below["played_ms"] == 900
    assert plays_in_ledger(coop, listener) == []

    time.sleep(0.3)
    crossed = progress(coop, "session-one", 1500)
    assert crossed["recorded"] is True and crossed["outcome"] == "paid"
    assert crossed["played_ms"] == 1500
    assert (crossed["price"], crossed["n"]) == (4000, 1)  # the next play costs double
    assert crossed["balance"] == balance - 2000
    (entry,) = plays_in_ledger(coop, listener)
    assert entry["id"] == crossed["entry"]
    assert entry["body"]["played_ms"] == 1500
    assert entry["body"]["track"] == coop.release["tracks"][0]["cid"]
    assert crossed["receipts"] == []  # the node held the blocks itself: no host to pay

    # Repeats, and reports going backwards, never record again.
    for played in (1500, 2500, 100):
        again = progress(coop, "session-one", played)
        assert again["recorded"] is True and again["entry"] == crossed["entry"]
        assert again["price"] == 4000 and again["balance"] == balance - 2000
    assert again["played_ms"] == 2500
    assert len(plays_in_ledger(coop, listener)) == 1
    wallet = coop.get(f"/wallets/{listener}")
    (track,) = wallet["tracks"]
    assert (track["paid"], track["next_price"]) == (1, 4000)

    # A new session is a new play, at the doubled price.
    progress(coop, "session-two", 0)
    time.sleep(0.4)
    second = progress(coop, "session-two", 1200)
    assert second["recorded"] is True and second["entry"] != crossed["entry"]
    assert (second["price"], second["n"], second["balance"]) == (8000, 2, balance - 6000)


@pytest.mark.integration
def test_progress_is_credited_no_faster_than_real_time(coop: WebCoop) -> None:
    claim = progress(coop, "session-greedy", 3000, track=1)
    assert claim["recorded"] is False and claim["played_ms"] < 1000
    time.sleep(0.3)
    later = progress(coop, "session-greedy", 3000, track=1)
    assert later["recorded"] is True  # 0.3 s at 4x covers the 1 s threshold


@pytest.mark.integration
def test_an_unfunded_listener_is_recorded_unpaid(coop: WebCoop) -> None:
    progress(coop, "session-fan", 0, as_="fan")
    time.sleep(0.3)
    answer = progress(coop, "session-fan", 1000, as_="fan")
    assert answer["recorded"] is True and answer["outcome"] == "unpaid"
    assert (answer["price"], answer["n"], answer["balance"]) == (2000, 0, 0)


@pytest.mark.integration
def test_bad_progress_reports_are_refused(coop: WebCoop) -> None:
    good = {"as": "listener", "release": coop.release["id"],
            "track": coop.release["tracks"][0]["cid"], "played_ms": 10, "session": "session-bad"}

    def refused(body: Any = None, raw: bytes | None = None, status: int = 400,
                code: str = "bad_request") -> str:
        return error_of(coop.post("/plays/progress", body, raw=raw), status, code)

    assert "not JSON" in refused(raw=b"{nope")
    assert "JSON object" in refused([1, 2])
    assert '"session"' in refused({k: v for k, v in good.items() if k != "session"})
    assert '"extra"' in refused({**good, "extra": 1})
    assert "played_ms" in refused({**good, "played_ms": -1})
    assert "played_ms" in refused({**good, "played_ms": True})
    assert "played_ms" in refused({**good, "played_ms": 1.5})
    assert "session" in refused({**good, "session": "short"})
    assert "key name" in refused({**good, "as": "../etc"})
    assert "release" in refused({**good, "release": "Qm" + "x" * 44})
    assert "nobody" in refused({**good, "as": "nobody"}, status=404, code="not_found")
    other = coop.get("/ledger/log?limit=1")["entries"][0]["id"]  # an entry, not a release
    assert "no release" in refused({**good, "release": other}, status=404, code="not_found")
    assert "no track" in refused({**good, "track": "QmNotATrack"}, status=404, code="not_found")
    assert coop.post("/plays/progress", good).status == 200
    message = refused({**good, "track": coop.release["tracks"][1]["cid"]}, status=409,
                      code="session_conflict")
    assert "new session" in message
    assert "unknown query" in error_of(
        coop.post("/plays/progress?x=1", good), 400, "bad_request")


@pytest.mark.integration
def test_writes_need_the_token(coop: WebCoop) -> None:
    body = {"as": "listener", "release": coop.release["id"],
            "track": coop.release["tracks"][0]["cid"], "played_ms": 10, "session": "session-tok"}
    error_of(coop.post("/plays/progress", body, token=None), 401, "unauthorized")
    error_of(coop.post("/plays/progress", body, token="x" * 43), 401, "unauthorized")
    error_of(coop.post("/ballots", {"as": "listener", "proposal": coop.release["id"],
                                    "option": 0}, token=None), 401, "unauthorized")
    # The public listener has no writes at all.
    assert request(coop.node.gateway, "POST", f"{API_PREFIX}/plays/progress",
                   headers=bearer(coop.token), body=json.dumps(body).encode()).status == 404


@pytest.mark.integration
def test_receipts_for_the_peers_the_node_fetched_the_track_from(tmp_path: Path) -> None:
    """A listener on node B plays a track whose blocks B fetched from node A while the
    session ran: the play names A as its host and B signs a receipt for A's bytes."""
    with web_coop(tmp_path) as coop:
        a = coop.node
        init_in_coop(tmp_path / "b", tmp_path / "web.genesis")
        b = DaemonProcess(tmp_path / "b", dht=False, extra=[*QUIET, "--sync-interval", "1"])
        roamer = Keystore(b.data).new("roamer").public_hex
        a.cli("member", "admit", roamer, "--class", "listener", "--as", "board")
        a.cli("wallet", "topup", roamer, "1c", "--as", "till")
        b.start()
        try:
            b.connect(a)
            on_b = WebCoop(b, coop.keys, coop.release)

            def b_caught_up() -> bool:
                return (on_b.get(f"/wallets/{roamer}")["balance"] == 1_000_000
                        and len(on_b.get("/releases")["releases"]) == 1)

            wait_for(b_caught_up, timeout=30, what="the release and top-up to reach B")
            track = coop.release["tracks"][0]
            progress(on_b, "session-roam", 0, as_="roamer")
            audio = request(b.api, "GET", f"/ipfs/{track['cid']}")
            assert audio.status == 200 and len(audio.body) == track["size"]
            time.sleep(0.3)
            played = progress(on_b, "session-roam", 1000, as_="roamer")
            assert played["recorded"] is True and played["outcome"] == "paid"
            (receipt_id,) = played["receipts"]
            receipt = on_b.get(f"/ledger/entries/{receipt_id}")
            assert receipt["author"] == roamer and receipt["kind"] == "receipt"
            assert receipt["body"]["host"] == a.peer_id
            assert receipt["body"]["roots"] == [track["cid"]]
            assert track["size"] <= receipt["body"]["bytes"] < track["size"] + 4096
            play = on_b.get(f"/ledger/entries/{played['entry']}")
            assert play["body"]["hosts"] == [a.peer_id]
            epochs = on_b.get("/tally")["epochs"]
            (figures,) = epochs.values()
            assert figures["host_bytes"] == {a.peer_id: receipt["body"]["bytes"]}
            assert figures["host_pay"][a.peer_id] > 0
        finally:
            b.stop()


# -- ballots ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_ballots(coop: WebCoop) -> None:
    proposal = coop.node.cli_json(
        "vote", "propose", "--title", "Longer epochs", "--text", "Make them a month?",
        "--option", "yes", "--option", "no", "--opens", "now", "--closes", "+1h",
        "--class", "listener", "--as", "artist", "--json")
    pid = proposal["id"]
    cast = coop.post("/ballots", {"as": "listener", "proposal": pid, "option": 1})
    assert cast.status == 200, cast.body
    written = conforms("POST", "/ballots", cast.json())
    assert written["counted"] is True and written["author"] == coop.keys["listener"]
    entry = coop.get(f"/ledger/entries/{written['id']}")
    assert entry["kind"] == "ballot" and entry["body"]["option"] == 1
    changed = coop.post("/ballots", {"as": "listener", "proposal": pid, "option": 0}).json()
    assert changed["counted"] is True
    (result,) = coop.get("/proposals")["proposals"]
    assert result["totals"] == [1, 0] and result["by_class"] == {"listener": [1, 0]}

    assert "no option 5" in error_of(
        coop.post("/ballots", {"as": "listener", "proposal": pid, "option": 5}), 422, "invalid")
    assert "not a member" in error_of(
        coop.post("/ballots", {"as": "artist", "proposal": pid, "option": 0}), 409,
        "not_eligible")
    error_of(coop.post("/ballots", {"as": "listener", "proposal": coop.release["id"],
                                    "option": 0}), 404, "not_found")
    error_of(coop.post("/ballots", {"as": "listener", "proposal": pid, "option": 16}), 400,
             "bad_request")


# -- the web app's files ------------------------------------------------------------------------


@pytest.mark.integration
def test_the_web_app_is_served_on_the_local_listener_only(coop: WebCoop) -> None:
    page = request(coop.node.api, "GET", "/")
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-cache"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["Referrer-Policy"] == "no-referrer"
    html = page.body.decode()
    assert '<main id="main"' in html and "http://" not in html and "https://" not in html
    script = html.split('<script type="module" src="')[1].split('"')[0]
    assert script.startswith("/app/app.js?v=")

    asset = request(coop.node.api, "GET", script)
    assert asset.status == 200
    assert asset.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "immutable" in asset.headers["Cache-Control"]
    assert b"/plays/progress" in asset.body
    etag = asset.headers["ETag"]
    cached = request(coop.node.api, "GET", script, headers={"If-None-Match": etag})
    assert cached.status == 304 and cached.body == b""
    stale = request(coop.node.api, "GET", "/app/app.js?v=old")
    assert stale.status == 200 and stale.headers["Cache-Control"] == "no-cache"
    css = request(coop.node.api, "GET", "/app/app.css")
    assert css.headers["Content-Type"] == "text/css; charset=utf-8"
    head = request(coop.node.api, "HEAD", "/")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["Content-Length"]) == len(page.body)
    assert request(coop.node.api, "GET", "/app/../pyproject.toml").status == 404
    assert request(coop.node.api, "GET", "/app/nothing.js").status == 404
    assert request(coop.node.api, "POST", "/", headers=bearer(coop.token)).status == 405

    for path in ("/", script, "/app/app.css"):
        assert request(coop.node.gateway, "GET", path).status == 404


@pytest.mark.integration
def test_chorus_web_prints_the_address_with_the_token(coop: WebCoop) -> None:
    url = coop.node.cli("web", "--as", "listener").stdout.decode().strip()
    assert url == f"{coop.node.api}/?token={coop.token}&as=listener"
    refused = coop.node.cli("web", "--as", "nobody", check=False)
    assert refused.returncode == 1 and b"nobody" in refused.stderr
