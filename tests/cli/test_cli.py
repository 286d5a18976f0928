"""The `chorus` command end to end: in-process for speed, as a subprocess where the
process boundary matters (exit codes, no tracebacks, kill -9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from node.sample_audio import synth_track

CHUNK = 262_144


def chorus(capsysbinary, data: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data", str(data), *args])
    out, err = capsysbinary.readouterr()
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def run_chorus(data: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--data", str(data), *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.fixture
def repo(tmp_path, capsysbinary):
    data = tmp_path / "repo"
    code, out, _ = chorus(capsysbinary, data, "init")
    assert code == 0 and "initialized" in out
    return data


@pytest.fixture
def track(tmp_path) -> Path:
    path = tmp_path / "song.wav"
    path.write_bytes(synth_track("test song", seconds=15.0))  # ~660 KB: 3 chunks
    return path


def test_add_prints_kubo_lines_and_cat_returns_bytes(repo, track, capsysbinary):
    code, out, _ = chorus(capsysbinary, repo, "add", str(track))
    assert code == 0
    word, cid, name = out.split()
    assert word == "added" and cid.startswith("Qm") and name == "song.wav"
    code, out, _ = chorus(capsysbinary, repo, "cat", cid)
    assert code == 0
    code = main(["--data", str(repo), "cat", cid])
    data, _ = capsysbinary.readouterr()
    assert data == track.read_bytes()


def test_quiet_flags_and_cid_version_1_implies_raw_leaves(repo, track, capsysbinary):
    _, v1, _ = chorus(capsysbinary, repo, "add", "-Q", "--cid-version", "1", str(track))
    _, v1_raw, _ = chorus(capsysbinary, repo, "add", "-Q", "--cid-version=1", "--raw-leaves",
                          str(track))
    _, v1_pb, _ = chorus(capsysbinary, repo, "add", "-Q", "--cid-version=1", "--no-raw-leaves",
                         str(track))
    assert v1.strip() == v1_raw.strip() != v1_pb.strip()
    assert v1.strip().startswith("bafybei")
    _, q, _ = chorus(capsysbinary, repo, "add", "-q", str(track))
    assert q.strip().startswith("Qm") and len(q.split()) == 1


def test_only_hash_needs_no_repo_and_stores_nothing(tmp_path, track, capsysbinary):
    missing = tmp_path / "nowhere"
    code, out, _ = chorus(capsysbinary, missing, "add", "-n", "-Q", str(track))
    assert code == 0 and out.strip().startswith("Qm")
    assert not missing.exists()


def test_add_stdin_names_entry_by_cid(repo):
    result = run_chorus(repo, "add", stdin=b"hello world\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == (
        "added QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o "
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    )


def test_add_recursive_directory_and_get(repo, tmp_path, capsysbinary):
    album = tmp_path / "album"
    (album / "disc").mkdir(parents=True)
    (album / "a.txt").write_bytes(b"side a\n")
    (album / "disc" / "b.bin").write_bytes(os.urandom(CHUNK + 7))
    (album / ".hidden").write_bytes(b"secret")
    code, _, err = chorus(capsysbinary, repo, "add", str(album))
    assert code == 1 and "use -r" in err
    code, out, _ = chorus(capsysbinary, repo, "add", "-r", str(album))
    assert code == 0
    names = [line.split()[2] for line in out.splitlines()]
    assert names == ["album/a.txt", "album/disc/b.bin", "album/disc", "album"]
    root = out.splitlines()[-1].split()[1]
    dest = tmp_path / "out"
    code, _, _ = chorus(capsysbinary, repo, "get", root, "-o", str(dest))
    assert code == 0
    assert (dest / "disc" / "b.bin").read_bytes() == (album / "disc" / "b.bin").read_bytes()
    assert not (dest / ".hidden").exists()
    code, out, _ = chorus(capsysbinary, repo, "cat", f"/ipfs/{root}/a.txt")
    assert out == "side a\n"
    code, _, err = chorus(capsysbinary, repo, "get", root, "-o", str(dest))
    assert code == 1 and "already exists" in err
    _, hidden, _ = chorus(capsysbinary, repo, "add", "-r", "--hidden", "-Q", str(album))
    assert hidden.strip() != root


def test_cat_offset_and_length(repo, track, capsysbinary):
    _, out, _ = chorus(capsysbinary, repo, "add", "-Q", str(track))
    cid = out.strip()
    main(["--data", str(repo), "cat", cid, "--offset", str(CHUNK - 3), "--length", "10"])
    got, _ = capsysbinary.readouterr()
    assert got == track.read_bytes()[CHUNK - 3 : CHUNK + 7]


def test_pins_gc_and_stat(repo, track, tmp_path, capsysbinary):
    _, out, _ = chorus(capsysbinary, repo, "add", "-Q", str(track))
    cid = out.strip()
    other = tmp_path / "other.bin"
    other.write_bytes(b"unpinned bytes")
    _, out, _ = chorus(capsysbinary, repo, "add", "-Q", "--no-pin", str(other))
    loose = out.strip()
    _, out, _ = chorus(capsysbinary, repo, "pin", "ls", "--type", "recursive")
    assert out.split() == [cid, "recursive"]
    _, out, _ = chorus(capsysbinary, repo, "pin", "ls", "--json")
    keys = json.loads(out)["Keys"]
    assert keys[cid]["Type"] == "recursive"
    assert sum(1 for v in keys.values() if v["Type"] == "indirect") == 3
    code, out, _ = chorus(capsysbinary, repo, "repo", "gc")
    assert code == 0 and len(out.splitlines()) == 1  # only the unpinned block went
    code, _, err = chorus(capsysbinary, repo, "cat", loose)
    assert code == 1 and "not found" in err
    _, out, _ = chorus(capsysbinary, repo, "repo", "stat", "--json")
    stat = json.loads(out)
    assert stat["NumObjects"] == 4
    chorus(capsysbinary, repo, "pin", "rm", cid)
    _, out, _ = chorus(capsysbinary, repo, "repo", "gc", "-q")
    _, out, _ = chorus(capsysbinary, repo, "repo", "stat", "--json")
    assert json.loads(out)["NumObjects"] == 0


def test_car_round_trip_between_repos(repo, track, tmp_path, capsysbinary):
    _, out, _ = chorus(capsysbinary, repo, "add", "-Q", str(track))
    cid = out.strip()
    car = tmp_path / "song.car"
    code, _, _ = chorus(capsysbinary, repo, "car", "export", cid, "-o", str(car))
    assert code == 0 and car.stat().st_size > track.stat().st_size
    fresh = tmp_path / "fresh"
    chorus(capsysbinary, fresh, "init")
    code, out, _ = chorus(capsysbinary, fresh, "car", "import", str(car), "--json")
    assert code == 0 and json.loads(out)["Roots"] == [cid]
    main(["--data", str(fresh), "cat", cid])
    got, _ = capsysbinary.readouterr()
    assert got == track.read_bytes()


def test_quota_exceeded_is_one_line_and_stores_nothing(tmp_path, track, capsysbinary):
    data = tmp_path / "small"
    chorus(capsysbinary, data, "init", "--quota", "100KB")
    code, out, err = chorus(capsysbinary, data, "add", str(track))
    assert code == 1 and out == ""
    assert err.startswith("chorus: error:") and "quota" in err and len(err.splitlines()) == 1
    _, out, _ = chorus(capsysbinary, data, "repo", "stat", "--json")
    assert json.loads(out)["NumObjects"] == 0


@pytest.mark.integration
@pytest.mark.parametrize(
    "args,needle",
    [
        (["cat", "not-a-cid"], "not a valid CID"),
        (["cat", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"], "not found"),
        (["add", "/no/such/file"], "no such file"),
        (["pin", "add", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"], "not found"),
        (["car", "import", "/no/such.car"], "No such file"),
        (["init"], "already"),
    ],
)
def test_errors_are_one_line_without_traceback(repo, args, needle):
    result = run_chorus(repo, *args)
    err = result.stderr.decode()
    assert result.returncode == 1
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("chorus: error:")
    assert needle.lower() in err.lower()


@pytest.mark.integration
def test_uninitialised_repo_is_a_clear_error(tmp_path):
    result = run_chorus(tmp_path / "none", "cat", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
    err = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in err and "init" in err


@pytest.mark.integration
def test_bad_usage_exits_2(repo):
    result = run_chorus(repo, "add", "--cid-version", "7", "x")
    assert result.returncode == 2


def test_corrupt_block_is_reported_by_verify_and_reads(repo, tmp_path, capsysbinary):
    marker = b"CHORUS-CORRUPTION-MARKER-" * 100
    song = tmp_path / "marked.bin"
    song.write_bytes(marker)
    _, out, _ = chorus(capsysbinary, repo, "add", "-Q", "--cid-version", "1", str(song))
    cid = out.strip()
    db = repo / "blocks.sqlite"
    raw = bytearray(db.read_bytes())
    at = raw.find(marker[:50])
    assert at >= 0
    raw[at + 10] ^= 0xFF
    db.write_bytes(bytes(raw))
    code, out, err = chorus(capsysbinary, repo, "repo", "verify")
    assert code == 1 and cid in out and "corrupt" in err
    code, _, err = chorus(capsysbinary, repo, "cat", cid)
    assert code == 1 and "corrupt" in err.lower()


def test_every_command_help_ends_with_an_example() -> None:
    """Every command and subcommand's --help shows something to type."""
    from cli.examples import _subparsers
    from cli.main import build_parser

    missing = []

    def walk(parser, path):
        children = _subparsers(parser)
        if not children and "example" not in (parser.epilog or ""):
            missing.append(" ".join(path))
        for name, child in children.items():
            walk(child, (*path, name))

    walk(build_parser(), ())
    assert missing == []
