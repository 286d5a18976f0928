"""`chorus key new|list|show`: in-process for speed, and once through the console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cli.main import main
from node.identity import load_identity, peer_id_of
from node.keystore import Keystore
from node.repo import Repo

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def chorus(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data", str(data), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def repo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    data = tmp_path / "repo"
    code, out, _ = chorus(capsys, data, "init")
    assert code == 0 and "initialized" in out
    return data


def test_new_prints_the_public_key(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = chorus(capsys, repo, "key", "new", "alice")
    assert code == 0 and err == ""
    assert out.strip() == Keystore(repo).info("alice").public_hex
    assert len(out.strip()) == 64


def test_new_json(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = chorus(capsys, repo, "key", "new", "alice", "--json")
    assert code == 0
    public_hex = Keystore(repo).info("alice").public_hex
    assert json.loads(out) == {"name": "alice", "public_key": public_hex}


def test_list_table_and_json(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long_name = "m" * 64
    for name in ("zed", "alice", long_name):
        assert chorus(capsys, repo, "key", "new", name)[0] == 0
    store = Keystore(repo)
    code, out, _ = chorus(capsys, repo, "key", "list")
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.strip() and "─" not in line]
    assert rows[0] == ["name", "public", "key"]
    # self first, then by name; no public key cropped even beside a 64-character name
    assert rows[1:] == [[i.name, i.public_hex] for i in store.list()]
    assert [row[0] for row in rows[1:]] == ["self", "alice", long_name, "zed"]
    code, out, _ = chorus(capsys, repo, "key", "list", "--json")
    assert code == 0
    assert json.loads(out) == [{"name": i.name, "public_key": i.public_hex} for i in store.list()]


def test_show_self_includes_the_peer_id(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    identity = load_identity(repo)
    public_hex = bytes(identity.verify_key).hex()
    code, out, _ = chorus(capsys, repo, "key", "show", "self", "--json")
    assert code == 0
    assert json.loads(out) == {
        "name": "self",
        "public_key": public_hex,
        "peer_id": peer_id_of(identity),
    }
    code, out, _ = chorus(capsys, repo, "key", "show", "self")
    assert code == 0
    assert public_hex in out and peer_id_of(identity) in out


def test_show_member_key(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chorus(capsys, repo, "key", "new", "alice")
    public_hex = Keystore(repo).info("alice").public_hex
    code, out, _ = chorus(capsys, repo, "key", "show", "alice", "--json")
    assert code == 0 and json.loads(out) == {"name": "alice", "public_key": public_hex}
    code, out, _ = chorus(capsys, repo, "key", "show", "alice")
    assert code == 0 and "alice" in out and public_hex in out and "PeerID" not in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["key", "new", "../x"], "invalid key name '../x'"),
        (["key", "new", "SELF"], "[a-z0-9]"),
        (["key", "new", "self"], "node's identity"),
        (["key", "show", "nobody"], "no key named 'nobody'"),
        (["key", "show", "Bad/Name"], "invalid key name"),
    ],
)
def test_refusals_are_one_line(
    repo: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, out, err = chorus(capsys, repo, *args)
    assert code == 1 and out == ""
    assert err.startswith("chorus: error:") and len(err.strip().splitlines()) == 1
    assert needle in err


def test_existing_name_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, first, _ = chorus(capsys, repo, "key", "new", "alice")
    code, _, err = chorus(capsys, repo, "key", "new", "alice")
    assert code == 1 and "already exists" in err
    assert Keystore(repo).info("alice").public_hex == first.strip()


@pytest.mark.parametrize("command", [["list"], ["new", "alice"], ["show", "self"]])
def test_uninitialised_repo_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    missing = tmp_path / "none"
    code, _, err = chorus(capsys, missing, "key", *command)
    assert code == 1 and "chorus init" in err
    assert not missing.exists()
    code, _, err = chorus(capsys, tmp_path, "key", *command)
    assert code == 1 and "not an initialised chorus repo" in err
    assert not (tmp_path / "keys").exists()


def test_key_commands_work_while_the_repo_is_locked(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A running daemon holds the repo lock; the key commands must not need it.
    with Repo.open(repo):
        assert chorus(capsys, repo, "key", "new", "alice")[0] == 0
        code, out, _ = chorus(capsys, repo, "key", "list", "--json")
        assert code == 0 and [k["name"] for k in json.loads(out)] == ["self", "alice"]
        assert chorus(capsys, repo, "key", "show", "self")[0] == 0


@pytest.mark.integration
def test_console_script_lists_keys(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chorus(capsys, repo, "key", "new", "alice")
    result = subprocess.run(
        [
            str(PROJECT_ROOT / ".venv" / "bin" / "chorus"),
            "--data",
            str(repo),
            "key",
            "list",
            "--json",
        ],
        capture_output=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == [
        {"name": i.name, "public_key": i.public_hex} for i in Keystore(repo).list()
    ]
