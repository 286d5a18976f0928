"""`chorus release publish|ls|show|verify` and `chorus play` without a daemon (the repo
opened in-process), and the listener-side arithmetic of node/play.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mutagen.id3 import TIT2
from mutagen.wave import WAVE
from nacl.signing import SigningKey

from cli.main import main
from ledger.entry import sign_entry
from ledger.genesis import Params, create_genesis
from node import play as plays
from node.coop import join_coop
from node.keystore import Keystore
from node.release import ReleaseError, check_payees, read_track
from node.repo import Repo
from node.sample_audio import synth_track
from protocol.cid import DAG_PB, cid_to_text, make_cid, parse_cid
from protocol.dag import links_of


def chorus(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data", str(data), *args])
    out, err = capsys.readouterr()
    return code, out, err


def chorus_json(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> dict:
    code, out, err = chorus(capsys, data, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def album(directory: Path, titles: list[str], seconds: float = 4.0) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, title in enumerate(titles, 1):
        path = directory / f"{number:02d} {title}.wav"
        path.write_bytes(synth_track(title, seconds))
        paths.append(path)
    return paths


@pytest.fixture
def repo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """An initialised repo with keys artist, bob, carol and listener."""
    data = tmp_path / "repo"
    assert chorus(capsys, data, "init")[0] == 0
    for name in ("artist", "bob", "carol", "listener"):
        assert chorus(capsys, data, "key", "new", name)[0] == 0
    return data


def key(data: Path, name: str) -> bytes:
    return Keystore(data).info(name).public_key


def release_count(data: Path) -> int:
    with Repo.open(data) as opened:
        return sum(1 for record in opened.ledger.iter_log() if b"release" in record.data)


def test_publish_three_tracks_with_awkward_split(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = album(tmp_path / "album", ["Dawn", "Noon", "Dusk"])
    tagged = WAVE(paths[1])
    tagged.add_tags()
    tagged.tags.add(TIT2(encoding=3, text="High Noon"))
    tagged.save()
    (tmp_path / "album" / "cover.jpg").write_bytes(b"\xff\xd8 not music")
    (tmp_path / "album" / ".hidden.wav").write_bytes(b"ignored")

    published = chorus_json(
        capsys, repo, "release", "publish", str(tmp_path / "album"), "--title", "Daylight",
        "--as", "artist", "--payee", "artist:3333", "--payee", "bob:3333",
        "--payee", f"{key(repo, 'carol').hex()}:3334",
    )
    assert published["title"] == "Daylight"
    assert published["artist"] == key(repo, "artist").hex()
    tracks = published["tracks"]
    assert [t["title"] for t in tracks] == ["01 Dawn", "High Noon", "03 Dusk"]
    for track, path in zip(tracks, paths, strict=True):
        # The same CID `chorus add` (and `ipfs add`) gives the file: CIDv0, default profile.
        code, out, _ = chorus(capsys, repo, "add", "-Q", "-n", str(path))
        assert code == 0 and track["cid"] == out.strip() and track["cid"].startswith("Qm")
        assert track["size"] == path.stat().st_size
        assert track["duration_ms"] == 4000 and track["mime"] == "audio/wav"
    assert published["duration_ms"] == 12000
    expected = sorted([(key(repo, "artist"), 3333), (key(repo, "bob"), 3333),
                       (key(repo, "carol"), 3334)])
    assert published["payees"] == [{"key": k.hex(), "bps": bps} for k, bps in expected]

    pins = chorus_json(capsys, repo, "pin", "ls", "--type", "recursive")["Keys"]
    assert {t["cid"] for t in tracks} == set(pins)

    listing = chorus_json(capsys, repo, "release", "ls")["releases"]
    assert [r["id"] for r in listing] == [published["id"]]
    shown = chorus_json(capsys, repo, "release", "show", published["id"])
    assert shown["figures"] is None  # the repo is in no co-op: no tally to show
    assert {k: v for k, v in shown.items() if k != "figures"} == published

    code, out, _ = chorus(capsys, repo, "release", "show", published["id"])
    assert code == 0 and "3334 bps" in out and "(carol)" in out and "High Noon" in out

    verified = chorus_json(capsys, repo, "release", "verify", published["id"])
    assert verified["ok"] is True
    assert [t["size"] for t in verified["tracks"]] == [p.stat().st_size for p in paths]
    code, out, _ = chorus(capsys, repo, "release", "verify", published["id"])
    assert code == 0 and out.count("ok    ") == 3


def test_verify_names_missing_blocks(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    album(tmp_path / "album", ["Long"], seconds=8.0)  # 352 kB: two chunks and a root
    release = chorus_json(capsys, repo, "release", "publish", str(tmp_path / "album"),
                          "--title", "Single", "--as", "artist")
    cid = release["tracks"][0]["cid"]
    with Repo.open(repo) as opened:
        root = parse_cid(cid)
        leaf = links_of(root, opened.blockstore.get(root))[1]
        opened.blockstore.pin_rm(root)
        opened.blockstore.delete(leaf)
    code, out, err = chorus(capsys, repo, "release", "verify", release["id"], "--json")
    answer = json.loads(out)
    assert code == 1 and answer["ok"] is False
    assert answer["tracks"][0]["missing"] == [cid_to_text(leaf)]
    code, out, err = chorus(capsys, repo, "release", "verify", release["id"])
    assert code == 1 and "FAIL" in out and "1 blocks missing" in out
    assert "1 of 1 tracks" in err


def test_a_file_that_is_not_audio_is_refused_by_name(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    album(tmp_path / "album", ["Fine"])
    fake = tmp_path / "album" / "02 Broken.wav"
    fake.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk, not a fmt chunk")
    code, _, err = chorus(capsys, repo, "release", "publish", str(tmp_path / "album"),
                          "--title", "Nope", "--as", "artist")
    assert code == 1
    assert str(fake) in err and "not an audio file" in err
    assert release_count(repo) == 0
    assert chorus_json(capsys, repo, "repo", "stat")["NumObjects"] == 0  # nothing imported

    words = tmp_path / "words"
    words.mkdir()
    (words / "lyrics.txt").write_text("la la la")
    code, _, err = chorus(capsys, repo, "release", "publish", str(words),
                          "--title", "Nope", "--as", "artist")
    assert code == 1 and "holds no audio files" in err
    with pytest.raises(ReleaseError, match="lyrics"):
        read_track_as_audio(words / "lyrics.txt")


def read_track_as_audio(path: Path):
    renamed = path.with_suffix(".mp3")
    path.rename(renamed)
    try:
        return read_track(renamed)
    finally:
        renamed.rename(path)


def test_payees_must_sum_to_10000(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    album(tmp_path / "album", ["One"])
    code, _, err = chorus(
        capsys, repo, "release", "publish", str(tmp_path / "album"), "--title", "Thirds",
        "--as", "artist", "--payee", "artist:3333", "--payee", "bob:3333",
        "--payee", "carol:3333",
    )
    assert code == 1
    assert "must sum to exactly 10000 bps" in err and "9999" in err
    assert release_count(repo) == 0
    assert chorus_json(capsys, repo, "repo", "stat")["NumObjects"] == 0

    code, _, err = chorus(capsys, repo, "release", "publish", str(tmp_path / "album"),
                          "--title", "Twice", "--as", "artist", "--payee", "bob:5000",
                          "--payee", "bob:5000")
    assert code == 1 and "named twice" in err
    code, _, err = chorus(capsys, repo, "release", "publish", str(tmp_path / "album"),
                          "--title", "Who", "--as", "artist", "--payee", "nobody:10000")
    assert code == 1 and "nobody" in err
    code, _, err = chorus(capsys, repo, "release", "publish", str(tmp_path / "album"),
                          "--title", "Bad", "--as", "artist", "--payee", "bob")
    assert code == 1 and "KEY:BPS" in err
    with pytest.raises(ReleaseError, match="sum to 10001"):
        check_payees([(b"a" * 32, 5000), (b"b" * 32, 5001)])


# -- playing offline ---------------------------------------------------------------------------


@pytest.fixture
def coop(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    """The repo joined a one-board co-op whose board key is also its treasury; the
    listener was topped up with 5,000 µc; a release of two 4 s tracks is published."""
    board = Keystore(repo).get("artist")  # any key will do as the board here
    genesis = create_genesis("test co-op", [board], [bytes(board.verify_key)], Params(), 1000)
    join_coop(repo, genesis.encoded)
    listener = key(repo, "listener")
    with Repo.open(repo) as opened:
        opened.ledger.write(board, "topup", {"wallet": listener, "amount": 5000},
                            int(time.time() * 1000))
    album(tmp_path / "album", ["Short", "Other"])
    release = chorus_json(capsys, repo, "release", "publish", str(tmp_path / "album"),
                          "--title", "Two", "--as", "artist")
    return {"genesis": genesis, "release": release, "track": release["tracks"][0]["cid"]}


def test_play_offline_pays_and_counts_toward_ownership(
    repo: Path, coop: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    track = coop["track"]
    first = chorus_json(capsys, repo, "play", track, "--as", "listener")
    assert first["outcome"] == "paid" and first["price"] == 2000
    assert first["before"] == {"price": 2000, "paid": 0, "plays_to_own": 9, "owned": False,
                               "balance": 5000}
    assert first["after"]["balance"] == 3000 and first["after"]["paid"] == 1
    assert first["hosts"] == [] and first["receipts"] == [] and first["online"] is False
    assert first["played_ms"] == 4000 and first["bytes"] == first["size"]
    assert first["release"] == coop["release"]["id"]

    # Half the track: under min(45 s, 4 s), so nothing is recorded.
    half = chorus_json(capsys, repo, "play", track, "--as", "listener", "--seconds", "2")
    assert half["counted"] is False and half["play"] is None
    assert half["played_ms"] == 2000 and half["bytes"] == -(-half["size"] // 2)
    assert half["after"] == half["before"]

    # The second play costs 4,000 µc and the wallet holds 3,000: recorded unpaid.
    code, out, _ = chorus(capsys, repo, "play", track, "--as", "listener")
    assert code == 0
    assert "4,000 µc, paid play 2 of 9" in out and "UNPAID" in out
    assert "ownership  1 of 9 paid plays" in out

    # The audio itself, written where asked.
    saved = tmp_path / "out.wav"
    chorus_json(capsys, repo, "play", track, "--as", "listener", "-o", str(saved))
    assert saved.read_bytes() == (tmp_path / "album" / "01 Short.wav").read_bytes()

    shown = chorus_json(capsys, repo, "release", "show", coop["release"]["id"])
    assert shown["figures"] == {"paid_plays": 1, "earnings": 1400}


def test_play_refuses_what_is_not_published(
    repo: Path, coop: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loose = tmp_path / "loose.wav"
    loose.write_bytes(synth_track("loose", 1.0))
    code, out, _ = chorus(capsys, repo, "add", "-Q", str(loose))
    code, _, err = chorus(capsys, repo, "play", out.strip(), "--as", "listener")
    assert code == 1 and "no release" in err
    other = coop["release"]["tracks"][1]["cid"]
    code, _, err = chorus(capsys, repo, "play", other, "--as", "listener", "--release",
                          coop["release"]["id"] + "x")
    assert code == 1 and "not a release id" in err


# -- node/play.py ------------------------------------------------------------------------------


def test_played_ms_and_bytes_for_ms() -> None:
    assert plays.played_ms(60_000, 1000, 1000) == 60_000
    assert plays.played_ms(60_000, 1000, 750) == 45_000
    assert plays.played_ms(60_000, 1000, 2000) == 60_000  # capped at the duration
    assert plays.played_ms(3_000, 0, 0) == 3_000  # an empty file is played at once
    assert plays.bytes_for_ms(1000, 60_000, 45_000) == 750
    assert plays.bytes_for_ms(1001, 60_000, 45_000) == 751  # rounded up: it must count
    assert plays.played_ms(60_000, 1001, 751) >= 45_000
    assert plays.bytes_for_ms(1000, 60_000, 90_000) == 1000
    params = Params()
    assert plays.counts(params, 30_000, 30_000) and not plays.counts(params, 30_000, 29_999)
    assert plays.counts(params, 200_000, 45_000) and not plays.counts(params, 200_000, 44_999)


def test_hosts_are_the_peers_whose_counters_grew() -> None:
    before = {"A": 100, "B": 50, "C": 7}
    after = {"A": 400, "B": 50, "C": 9, "D": 300}
    grown = plays.host_bytes(before, after)
    assert grown == {"A": 300, "C": 2, "D": 300}
    assert plays.hosts_of(grown) == ["A", "D", "C"]
    many = {f"peer{n:02d}": n for n in range(1, 30)}
    assert len(plays.hosts_of(many)) == plays.MAX_HOSTS == 16
    assert plays.host_bytes({"A": 10}, {"A": 3}) == {}  # a restarted daemon: left out


def test_receipts_are_cumulative_per_host_and_epoch() -> None:
    one, two = (cid_to_text(make_cid(n, version=0, codec=DAG_PB)) for n in (b"1", b"2"))
    listener = SigningKey.generate()
    author = bytes(listener.verify_key)
    first = plays.receipt_bodies([], author, 7, {"A": 1000, "B": 500}, one)
    assert first == [
        {"host": "A", "epoch": 7, "bytes": 1000, "roots": [one]},
        {"host": "B", "epoch": 7, "bytes": 500, "roots": [one]},
    ]
    signed = []
    prev = None
    for seq, body in enumerate(first, 1):
        entry = sign_entry(listener, seq, prev, 10 + seq, "receipt", body)
        signed.append(entry)
        prev = entry.id_bytes
    later = plays.receipt_bodies(signed, author, 7, {"A": 250}, two)
    assert later == [{"host": "A", "epoch": 7, "bytes": 1250, "roots": [one, two]}]
    again = plays.receipt_bodies(signed, author, 7, {"B": 1}, one)
    assert again == [{"host": "B", "epoch": 7, "bytes": 501, "roots": [one]}]
    assert plays.receipt_bodies(signed, author, 8, {"A": 250}, two)[0]["bytes"] == 250
    assert plays.receipt_bodies(signed, b"x" * 32, 7, {"A": 5}, two)[0]["bytes"] == 5
