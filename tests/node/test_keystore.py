"""Member keys: real files under <repo>/keys, "self" as the node identity, name rules."""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from node.errors import RepoError
from node.identity import load_identity
from node.keystore import (
    KEY_NAME_RULE,
    InvalidKeyName,
    KeyExists,
    KeyFileError,
    KeyInfo,
    KeyNotFound,
    Keystore,
    KeystoreError,
)
from node.repo import Repo
from protocol.errors import ChorusError


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    Repo.init(path).close()
    return path


@pytest.fixture
def keystore(repo_path: Path) -> Keystore:
    return Keystore(repo_path)


def _public(key: SigningKey) -> bytes:
    return bytes(key.verify_key)


def test_new_get_info_round_trip(keystore: Keystore, repo_path: Path) -> None:
    info = keystore.new("alice")
    assert isinstance(info, KeyInfo) and info.name == "alice"
    assert len(info.public_key) == 32 and info.public_hex == info.public_key.hex()
    key = keystore.get("alice")
    assert _public(key) == info.public_key
    assert keystore.info("alice") == info
    assert (repo_path / "keys" / "alice.key").read_bytes() == bytes(key)
    # A signature made with the stored key verifies under the public key shown.
    signed = key.sign(b"release 1")
    assert key.verify_key.verify(signed) == b"release 1"


def test_each_new_key_is_distinct_from_the_others_and_from_self(keystore: Keystore) -> None:
    publics = {keystore.new(name).public_key for name in ("a", "b", "c")}
    publics.add(keystore.info("self").public_key)
    assert len(publics) == 4


def test_self_is_the_node_identity_and_is_not_stored_under_keys(
    keystore: Keystore, repo_path: Path
) -> None:
    identity = load_identity(repo_path)
    assert bytes(keystore.get("self")) == bytes(identity)
    assert keystore.info("self") == KeyInfo("self", _public(identity))
    assert keystore.list() == [KeyInfo("self", _public(identity))]
    assert not (repo_path / "keys").exists()


def test_self_follows_the_identity_file_not_a_stray_self_key(
    keystore: Keystore, repo_path: Path
) -> None:
    keystore.new("alice")
    (repo_path / "keys" / "self.key").write_bytes(bytes(SigningKey.generate()))
    identity = load_identity(repo_path)
    assert bytes(keystore.get("self")) == bytes(identity)
    assert [info.name for info in keystore.list()] == ["self", "alice"]


def test_list_puts_self_first_then_sorts_and_skips_non_keys(
    keystore: Keystore, repo_path: Path
) -> None:
    for name in ("zed", "bob", "alice", "0day", "a.b_c-d"):
        keystore.new(name)
    keys_dir = repo_path / "keys"
    (keys_dir / "README").write_text("not a key")
    (keys_dir / ".alice.0123.new").write_bytes(bytes(32))  # an interrupted new
    (keys_dir / "Upper.key").write_bytes(bytes(32))  # not a valid name
    (keys_dir / "dir.key").mkdir()
    names = [info.name for info in keystore.list()]
    assert names == ["self", "0day", "a.b_c-d", "alice", "bob", "zed"]


def test_find_by_public(keystore: Keystore) -> None:
    alice = keystore.new("alice")
    assert keystore.find_by_public(alice.public_key) == "alice"
    assert keystore.find_by_public(keystore.info("self").public_key) == "self"
    assert keystore.find_by_public(bytes(32)) is None


def test_files_are_private(keystore: Keystore, repo_path: Path) -> None:
    old = os.umask(0o022)
    try:
        keystore.new("alice")
    finally:
        os.umask(old)
    assert (repo_path / "keys").stat().st_mode & 0o777 == 0o700
    assert (repo_path / "keys" / "alice.key").stat().st_mode & 0o777 == 0o600
    # Nothing but the key itself is left behind.
    assert sorted(p.name for p in (repo_path / "keys").iterdir()) == ["alice.key"]


def test_existing_name_is_refused_and_kept(keystore: Keystore) -> None:
    first = keystore.new("alice")
    with pytest.raises(KeyExists, match="'alice' already exists") as caught:
        keystore.new("alice")
    assert caught.value.name == "alice"
    assert keystore.info("alice") == first


def test_self_cannot_be_created(keystore: Keystore, repo_path: Path) -> None:
    identity = bytes(load_identity(repo_path))
    with pytest.raises(KeyExists, match="node's identity"):
        keystore.new("self")
    assert bytes(load_identity(repo_path)) == identity


def test_a_race_for_a_name_is_refused_not_overwritten(
    keystore: Keystore, repo_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process creates alice.key between our check and our write.
    rival = bytes(SigningKey.generate())
    real_link = os.link

    def link_after_rival(src: str | Path, dst: str | Path) -> None:
        Path(dst).write_bytes(rival)
        real_link(src, dst)

    keystore.new("warmup")  # the keys dir exists
    monkeypatch.setattr(os, "link", link_after_rival)
    with pytest.raises(KeyExists):
        keystore.new("alice")
    assert (repo_path / "keys" / "alice.key").read_bytes() == rival
    assert sorted(p.name for p in (repo_path / "keys").iterdir()) == ["alice.key", "warmup.key"]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x",
        "..",
        ".",
        ".hidden",
        "a/b",
        "a\\b",
        "SELF",
        "Alice",
        "-x",
        "_x",
        "a b",
        "a\n",
        "a\x00",
        "é",
        "a" * 65,
    ],
)
def test_bad_names_are_refused_with_the_rule(
    keystore: Keystore, repo_path: Path, name: str
) -> None:
    for call in (keystore.new, keystore.get, keystore.info):
        with pytest.raises(InvalidKeyName, match=re.escape(KEY_NAME_RULE)) as caught:
            call(name)
        assert caught.value.name == name
    assert not (repo_path / "keys").exists()
    assert not (repo_path.parent / "x.key").exists()


def test_longest_name_is_accepted(keystore: Keystore) -> None:
    name = "a" * 64
    assert keystore.new(name).name == name
    assert keystore.info(name).name == name


def test_missing_key_names_the_key_and_the_directory(keystore: Keystore, repo_path: Path) -> None:
    with pytest.raises(KeyNotFound) as caught:
        keystore.get("nobody")
    message = str(caught.value)
    assert "'nobody'" in message and str(repo_path / "keys") in message
    assert isinstance(caught.value, KeyError)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_malformed_key_file_is_a_typed_error(
    keystore: Keystore, repo_path: Path, size: int
) -> None:
    keystore.new("alice")
    path = repo_path / "keys" / "alice.key"
    path.write_bytes(b"\x01" * size)
    for call in (keystore.get, keystore.info):
        with pytest.raises(KeyFileError, match=f"holds {size} bytes") as caught:
            call("alice")
        assert caught.value.path == path
    with pytest.raises(KeyFileError):
        keystore.list()


def test_errors_are_repo_and_chorus_errors() -> None:
    for cls in (InvalidKeyName, KeyExists, KeyNotFound, KeyFileError):
        assert issubclass(cls, KeystoreError)
        assert issubclass(cls, RepoError) and issubclass(cls, ChorusError)


def test_an_uninitialised_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="run `chorus init`"):
        Keystore(tmp_path / "nowhere")
    with pytest.raises(RepoError, match="not an initialised chorus repo"):
        Keystore(tmp_path)


def test_works_while_the_repo_is_open_and_locked(repo_path: Path) -> None:
    with Repo.open(repo_path) as repo:
        store = Keystore(repo_path)
        info = store.new("alice")
        assert [i.name for i in store.list()] == ["self", "alice"]
        assert store.info("self").public_key == _public(repo.identity)
        assert store.info("alice") == info


_NAME_CHARS = string.ascii_letters + string.digits + "_.-/\\ \n\x00é"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.text(alphabet=_NAME_CHARS, max_size=70),
        st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,63}\Z"),
        st.text(max_size=8),
    )
)
def test_any_name_is_either_a_round_trip_or_refused(keystore: Keystore, name: str) -> None:
    valid = re.fullmatch(KEY_NAME_RULE, name) is not None
    assert valid == (
        1 <= len(name) <= 64
        and name[0] in string.ascii_lowercase + string.digits
        and all(c in string.ascii_lowercase + string.digits + "_.-" for c in name)
    )
    if not valid:
        with pytest.raises(InvalidKeyName):
            keystore.new(name)
        with pytest.raises(InvalidKeyName):
            keystore.get(name)
        return
    existing = {info.name for info in keystore.list()}
    if name in existing:
        with pytest.raises(KeyExists):
            keystore.new(name)
        return
    info = keystore.new(name)
    assert info.name == name
    assert _public(keystore.get(name)) == info.public_key
    assert keystore.info(name) == info
    assert keystore.find_by_public(info.public_key) == name
    assert (keystore.directory / f"{name}.key").is_file()
