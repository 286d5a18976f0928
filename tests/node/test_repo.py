"""The data directory: init, open, the lock, config.json and the default location."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.blockstore import FILE_NAME
from node.errors import QuotaExceeded, RepoError
from node.repo import CONFIG_FILE, REPO_VERSION, Repo, RepoConfig, default_data_dir
from protocol.cid import make_cid

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_init_creates_the_layout(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "repo"
    with Repo.init(path, quota=1_000_000) as repo:
        assert repo.path == path
        assert repo.config == RepoConfig(version=REPO_VERSION, quota=1_000_000)
        assert repo.blockstore.stat().quota == 1_000_000
    assert json.loads((path / CONFIG_FILE).read_text()) == {"version": 1, "quota": 1_000_000}
    assert (path / FILE_NAME).is_file()
    if os.name == "posix":
        assert (path.stat().st_mode & 0o777) == 0o700


def test_init_into_an_existing_empty_directory(tmp_path: Path) -> None:
    Repo.init(tmp_path).close()
    assert (tmp_path / CONFIG_FILE).exists()


def test_reinit_is_refused(tmp_path: Path) -> None:
    Repo.init(tmp_path / "r").close()
    with pytest.raises(RepoError, match="already a chorus repo"):
        Repo.init(tmp_path / "r")


def test_init_refuses_a_file_and_bad_quota(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RepoError, match="not a directory"):
        Repo.init(tmp_path / "file")
    with pytest.raises(RepoError, match="quota"):
        Repo.init(tmp_path / "r", quota=-5)


def test_blocks_and_quota_persist_across_open(tmp_path: Path) -> None:
    block = b"kept across restarts"
    with Repo.init(tmp_path, quota=100) as repo:
        repo.blockstore.put(make_cid(block), block)
    with Repo.open(tmp_path) as repo:
        assert repo.blockstore.get(make_cid(block)) == block
        with pytest.raises(QuotaExceeded):
            repo.blockstore.put(make_cid(b"y" * 90), b"y" * 90)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no chorus repo .*chorus init"),
        (lambda p: p.write_text("x"), "not a directory"),
        (lambda p: p.mkdir(), "not an initialised chorus repo"),
    ],
)
def test_open_explains_what_is_missing(tmp_path: Path, setup, message: str) -> None:
    path = tmp_path / "repo"
    setup(path)
    with pytest.raises(RepoError, match=message):
        Repo.open(path)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"quota": null}', "'version'"),
        (b'{"version": "1", "quota": null}', "'version'"),
        (b'{"version": 99, "quota": null}', "newer chorus"),
        (b'{"version": 1, "quota": -1}', "'quota'"),
        (b'{"version": 1, "quota": 1.5}', "'quota'"),
        (b'{"version": 1, "quota": true}', "'quota'"),
    ],
)
def test_unreadable_config_is_a_repo_error(tmp_path: Path, config: bytes, message: str) -> None:
    Repo.init(tmp_path).close()
    (tmp_path / CONFIG_FILE).write_bytes(config)
    with pytest.raises(RepoError, match=message) as info:
        Repo.open(tmp_path)
    assert CONFIG_FILE in str(info.value)
    # The failed open released the lock: the config can be fixed and the repo reopened.
    (tmp_path / CONFIG_FILE).write_bytes(b'{"version": 1, "quota": null}')
    Repo.open(tmp_path).close()


def test_missing_blockstore_is_a_repo_error(tmp_path: Path) -> None:
    Repo.init(tmp_path).close()
    (tmp_path / FILE_NAME).unlink()
    with pytest.raises(RepoError, match=FILE_NAME):
        Repo.open(tmp_path)


def test_unknown_config_keys_survive(tmp_path: Path) -> None:
    raw = b'{"version": 1, "quota": 5, "identity": {"key": "later"}}'
    config = RepoConfig.from_json(raw, tmp_path / CONFIG_FILE)
    assert config.extra == {"identity": {"key": "later"}}
    assert json.loads(config.to_json()) == json.loads(raw)


def test_repo_is_locked_while_open(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path)
    with pytest.raises(RepoError, match="already open"):
        Repo.open(tmp_path)
    repo.close()
    repo.close()  # idempotent
    with Repo.open(tmp_path):
        pass
    Repo.open(tmp_path).close()  # the with block released it


@pytest.mark.integration
def test_lock_names_the_other_process(tmp_path: Path) -> None:
    Repo.init(tmp_path).close()
    script = (
        "import sys; from node.repo import Repo; r = Repo.open(sys.argv[1]); "
        "print('open', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"open\n"
        with pytest.raises(RepoError, match=f"pid {child.pid}"):
            Repo.open(tmp_path)
    finally:
        child.kill()
        child.wait()
    Repo.open(tmp_path).close()  # a dead holder leaves no stale lock


def test_default_data_dir(tmp_path: Path) -> None:
    assert default_data_dir({"CHORUS_DATA": str(tmp_path)}) == tmp_path
    assert default_data_dir({"CHORUS_DATA": "~/x"}) == Path("~/x").expanduser()
    default = default_data_dir({})
    assert default.name == "chorus" and default.is_absolute()
    assert default_data_dir({"CHORUS_DATA": "  "}) == default
