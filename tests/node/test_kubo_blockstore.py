"""node/kubo_blockstore.py against a real Kubo-RPC-speaking server: a chorus daemon's own RPC.

The remote here is a second chorus daemon (its /api/v0 is the Kubo RPC subset), so the
tests need no Go binary; a small fake server plays a remote that lies. The last test
runs a daemon whose repo uses the `kubo` backend and checks that it adds and serves
content whose blocks live in the other daemon.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from multiformats import CID, multihash

from node.adder import add_paths
from node.errors import BlockNotFound, PinError, RepoError, StoreCorrupt
from node.kubo_blockstore import KuboBlockstore, api_multiaddr
from protocol.cid import DAG_PB, cid_from_multihash, make_cid
from protocol.errors import BlockMismatch, BlockTooLarge
from protocol.importer import KUBO_DEFAULT, KUBO_V1_RAW
from protocol.reader import read_file
from tests.daemons import DaemonProcess, wait_for
from tests.vectors.content import deterministic_bytes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ipfshttpclient

pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # urllib3 vs ipfshttpclient 0.7.0
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
integration = pytest.mark.integration

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "unixfs.json").read_text("utf-8"))
EMPTY_DIR = b"\x0a\x02\x08\x01"


def token_of(node: DaemonProcess) -> str | None:
    path = node.data / "api_token"
    return path.read_text("utf-8").strip() if path.exists() else None


def bearer(node: DaemonProcess) -> str | None:
    token = token_of(node)
    return f"Bearer {token}" if token else None


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    node = DaemonProcess(tmp_path_factory.mktemp("kubo") / "remote").start()
    yield node
    node.stop()


@pytest.fixture
def store(remote: DaemonProcess) -> Iterator[KuboBlockstore]:
    with KuboBlockstore(remote.api, authorization=bearer(remote)) as kubo:
        yield kubo


def unique(size: int = 1000) -> bytes:
    return os.urandom(size)


# -- addresses and config (no server needed) -------------------------------------------------


def test_addresses_become_multiaddrs() -> None:
    assert api_multiaddr("http://127.0.0.1:5001") == ("/ip4/127.0.0.1/tcp/5001/http", "api/v0")
    assert api_multiaddr("https://cluster.example:9095/api/v0/") == (
        "/dns/cluster.example/tcp/9095/https",
        "api/v0",
    )
    assert api_multiaddr("http://[::1]:5001") == ("/ip6/::1/tcp/5001/http", "api/v0")
    assert api_multiaddr("/ip4/127.0.0.1/tcp/5001") == ("/ip4/127.0.0.1/tcp/5001", "api/v0")
    for bad in ("ftp://x:1", "127.0.0.1:5001", "http://:5001", "http://host:notaport"):
        with pytest.raises(RepoError):
            api_multiaddr(bad)
    with pytest.raises(RepoError, match="cannot use the address"):
        KuboBlockstore("/ip4/127.0.0.1/udp/5001")


def test_config_is_checked(tmp_path: Path) -> None:
    source = tmp_path / "config.json"
    token = tmp_path / "token"
    token.write_text("s3cret-token-for-the-remote-node-000000\n")
    made = KuboBlockstore.from_config(
        {"kind": "kubo", "api": "http://127.0.0.1:5001", "token_file": "token", "timeout": 5},
        source=source,
    )
    assert made._headers == {"Authorization": "Bearer s3cret-token-for-the-remote-node-000000"}
    assert made.timeout == 5.0
    made.close()
    for spec, needle in [
        ({"kind": "kubo"}, "blockstore.api"),
        ({"kind": "kubo", "api": "http://h:1", "apl": 1}, "unknown blockstore keys"),
        ({"kind": "kubo", "api": "http://h:1", "token_file": "missing"}, "cannot read"),
        ({"kind": "kubo", "api": "http://h:1", "timeout": 0}, "timeout"),
        ({"kind": "kubo", "api": "http://h:1", "authorization": "x", "token_file": "t"}, "both"),
    ]:
        with pytest.raises(RepoError, match=needle):
            KuboBlockstore.from_config(spec, source=source)


def test_unreachable_remote_is_a_repo_error() -> None:
    kubo = KuboBlockstore("http://127.0.0.1:9", timeout=5)
    unreachable = r"cannot reach the Kubo RPC API at http://127\.0\.0\.1:9"
    with kubo, pytest.raises(RepoError, match=unreachable):
        kubo.get(make_cid(b"x"))
    with pytest.raises(RepoError, match="closed"):
        kubo.has(make_cid(b"x"))


# -- against a chorus daemon's RPC ---------------------------------------------------------


@integration
def test_put_get_has_size_round_trip(store: KuboBlockstore) -> None:
    data = unique()
    cid = make_cid(data)
    assert not store.has(cid)
    with pytest.raises(BlockNotFound):
        store.get(cid)
    with pytest.raises(BlockNotFound):
        store.size_of(cid)
    assert store.put(cid, data) is True
    assert store.put(cid, data) is False
    assert store.has(cid) and store.get(cid) == data and store.size_of(cid) == len(data)
    # dag-pb blocks under CIDv0 and CIDv1, a block over Kubo's 1 MiB soft limit
    for block_cid, block in [
        (make_cid(EMPTY_DIR, version=0, codec=DAG_PB), EMPTY_DIR),
        (make_cid(EMPTY_DIR, version=1, codec=DAG_PB), EMPTY_DIR),
        (make_cid(big := unique(1_500_000)), big),
    ]:
        store.put(block_cid, block)
        assert store.get(block_cid) == block
    identity = CID("base32", 1, "raw", multihash.digest(b"tiny", "identity"))
    assert store.has(identity) and store.get(identity) == b"tiny"
    assert store.put(identity, b"tiny") is False


@integration
def test_bad_blocks_are_refused_before_they_are_sent(store: KuboBlockstore) -> None:
    before = store.stat().blocks
    data = unique()
    with pytest.raises(BlockMismatch):
        store.put(make_cid(data), data + b"!")
    huge = bytes(2 * 1024 * 1024 + 1)
    with pytest.raises(BlockTooLarge):
        store.put(make_cid(huge), huge)
    batch = store.batch()
    with pytest.raises(BlockTooLarge):
        batch.put_verified(make_cid(huge), huge)
    with pytest.raises(RuntimeError, match="aborted"):
        batch.put(make_cid(data), data)
    assert store.stat().blocks == before
    assert not store.has(make_cid(data))


@integration
@pytest.mark.parametrize(
    ("profile", "options"), [("kubo-v0", KUBO_DEFAULT), ("v1-raw", KUBO_V1_RAW)]
)
def test_adding_into_the_remote_gives_the_reference_cids(
    store: KuboBlockstore, tmp_path: Path, profile: str, options
) -> None:
    case = next(c for c in VECTORS["files"] if c["name"] == "chunk-plus-1")
    data = deterministic_bytes(case["size"], case["seed"])
    path = tmp_path / case["name"]
    path.write_bytes(data)
    root = add_paths([path], store, options).root.cid
    assert str(root) == case["cids"][profile]
    assert b"".join(read_file(root, store.get)) == data
    assert (root, "recursive") in store.pin_ls("recursive")


@integration
def test_pins_gc_and_delete(store: KuboBlockstore, tmp_path: Path) -> None:
    path = tmp_path / "track.bin"
    path.write_bytes(unique(600_000))
    root = add_paths([path], store, KUBO_DEFAULT).root.cid
    pins = store.pin_ls()
    assert (root, "recursive") in pins
    leaves = [cid for cid, kind in pins if kind == "indirect"]
    assert len(leaves) >= 3
    order = [kind for _, kind in pins]
    assert order == sorted(order, key=["recursive", "direct", "indirect"].index)
    with pytest.raises(PinError, match="pinned"):
        store.delete(leaves[0])
    loose = unique()
    loose_cid = make_cid(loose)
    store.put(loose_cid, loose)
    store.pin_add(loose_cid, recursive=False)
    assert (loose_cid, "direct") in store.pin_ls("direct")
    with pytest.raises(PinError, match="recursively"):
        store.pin_rm(root, recursive=False)
    store.pin_rm(loose_cid, recursive=False)
    with pytest.raises(PinError, match="not pinned"):
        store.pin_rm(loose_cid)
    removed = store.gc()
    assert cid_from_multihash(bytes(loose_cid.digest)) in removed
    assert not store.has(loose_cid) and store.has(root)
    store.pin_rm(root)
    store.delete(root)
    assert not store.has(root)
    with pytest.raises(BlockNotFound):
        store.delete(root)
    missing = make_cid(unique())
    with pytest.raises(BlockNotFound):
        store.pin_add(missing)
    with pytest.raises(BlockNotFound):
        store.pin_add(root)  # its leaves are there, the root is gone


@integration
def test_batches_send_at_once_and_pin_at_commit(store: KuboBlockstore) -> None:
    a, b = unique(), unique()
    ca, cb = make_cid(a), make_cid(b)
    with store.batch() as batch:
        batch.put(ca, a)
        assert store.has(ca)  # a remote store cannot hide staged blocks
        batch.put_verified(cb, b)
        batch.put(ca, a)  # the same block twice is sent once
        batch.pin(ca)
        assert (ca, "recursive") not in store.pin_ls("recursive")  # pins wait for commit
    assert batch.new_blocks == 2 and batch.new_bytes == len(a) + len(b)
    assert (ca, "recursive") in store.pin_ls("recursive")

    c = unique()
    cc = make_cid(c)
    with pytest.raises(ValueError, match="boom"), store.batch() as aborted:
        aborted.put(cc, c)
        aborted.pin(cc)
        raise ValueError("boom")
    assert store.has(cc) and (cc, "recursive") not in store.pin_ls()  # unpinned: gc takes it

    # A commit that fails half way removes the pins it added, keeps those it found.
    batch = store.batch()
    batch.put(cc, c)
    batch.pin(ca)  # already pinned before this batch
    batch.pin(cb)
    batch.pin(make_cid(unique()))  # missing: the commit fails here
    with pytest.raises(BlockNotFound):
        batch.commit()
    recursive = {cid for cid, _ in store.pin_ls("recursive")}
    assert ca in recursive and cb not in recursive
    assert store.put_many([(make_cid(x), x) for x in (unique(), unique())]) == 2
    store.pin_rm(ca)
    assert cid_from_multihash(bytes(cc.digest)) in store.gc()


@integration
def test_listing_stat_and_verify(store: KuboBlockstore) -> None:
    data = unique()
    cid = make_cid(data)
    store.put(cid, data)
    store.pin_add(cid)
    listed = set(store.all_cids())
    assert cid_from_multihash(bytes(cid.digest)) in listed
    stat = store.stat()
    assert stat.blocks == len(listed) and stat.bytes > 0 and stat.quota is None
    report = store.verify(structure=True)
    assert report.ok and report.checked == len(listed)
    store.pin_rm(cid)


@integration
def test_writes_without_the_token_are_refused(remote: DaemonProcess) -> None:
    assert token_of(remote) is not None, "chorus init gives every repo an API token"
    with KuboBlockstore(remote.api) as anonymous:
        data = unique()
        with pytest.raises(RepoError, match=r"refused block/put \(401\).*authorization"):
            anonymous.put(make_cid(data), data)


# -- a remote that lies --------------------------------------------------------------------


class Liar(BaseHTTPRequestHandler):
    """Answers like Kubo, with wrong bytes and wrong CIDs."""

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length:
            self.rfile.read(int(length))
        elif self.headers.get("Transfer-Encoding") == "chunked":
            while (size := int(self.rfile.readline().strip(), 16)) != 0:
                self.rfile.read(size + 2)
            self.rfile.readline()
        path = self.path.split("?")[0]
        if path == "/api/v0/block/get":
            self.answer(200, b"not the bytes you asked for", "application/octet-stream")
        elif path == "/api/v0/block/stat":
            self.answer(200, b'{"Key": "x", "Size": -3}')
        elif path == "/api/v0/block/put":
            other = str(make_cid(b"something else"))
            self.answer(200, json.dumps({"Key": other, "Size": 1}).encode())
        elif path == "/api/v0/refs/local":
            self.answer(200, b'{"Ref": "not a cid", "Err": ""}\n')
        elif path == "/api/v0/repo/gc":
            self.answer(401, b'{"Message": "no token", "Code": 0, "Type": "error"}')
        else:
            self.answer(404, b"404 page not found\n", "text/plain")

    def answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def liar() -> Iterator[KuboBlockstore]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with KuboBlockstore(f"http://127.0.0.1:{server.server_port}", timeout=10) as kubo:
            yield kubo
    finally:
        server.shutdown()
        server.server_close()


def test_a_lying_remote_is_never_believed(liar: KuboBlockstore) -> None:
    data = b"the real block"
    cid = make_cid(data)
    with pytest.raises(StoreCorrupt, match="fail verification"):
        liar.get(cid)
    with pytest.raises(RepoError, match="size -3"):
        liar.size_of(cid)
    with pytest.raises(StoreCorrupt, match="stored block"):
        liar.batch().put(cid, data)
    with pytest.raises(RepoError, match="refs/local"):
        list(liar.all_cids())
    with pytest.raises(RepoError, match=r"\(401\)"):
        liar.gc()
    with pytest.raises(RepoError, match="refused pin/ls"):
        liar.pin_ls()


# -- a daemon on the kubo backend ------------------------------------------------------------


@integration
def test_a_daemon_on_the_kubo_backend_adds_and_serves(
    remote: DaemonProcess, tmp_path: Path
) -> None:
    node = DaemonProcess(tmp_path / "front")
    config = json.loads((node.data / "config.json").read_text("utf-8"))
    config["blockstore"] = {"kind": "kubo", "api": remote.api}
    if token_of(remote):
        config["blockstore"]["token_file"] = str(remote.data / "api_token")
    (node.data / "config.json").write_text(json.dumps(config), "utf-8")
    listener = DaemonProcess(tmp_path / "listener")
    track = tmp_path / "track.bin"
    track.write_bytes(unique(700_000))
    node.start()
    listener.start()
    try:
        cid = node.add(track)  # `chorus add`, through the front daemon's RPC
        headers = {"Authorization": bearer(remote)} if bearer(remote) else {}
        host, port = remote.api.removeprefix("http://").rsplit(":", 1)
        with ipfshttpclient.Client(f"/ip4/{host}/tcp/{port}/http", headers=headers) as back:
            assert back.pin.ls(cid)["Keys"][cid]["Type"] == "recursive"  # pinned over there
            assert back.cat(cid, offline=True) == track.read_bytes()  # blocks over there
        with sqlite3.connect(node.data / "blocks.sqlite") as db:
            assert db.execute("SELECT count(*) FROM blocks").fetchone()[0] == 0  # none here
        assert node.cli("cat", cid).stdout == track.read_bytes()
        # ...and serves it to the swarm over Bitswap, from the remote store
        listener.connect(node)
        out = tmp_path / "got.bin"
        listener.cli("get", cid, "-o", str(out), timeout=60)
        assert out.read_bytes() == track.read_bytes()
        wait_for(lambda: node.bitswap_stat()["DataSent"] >= 700_000, what="bitswap counters")
    finally:
        listener.stop()
        node.stop()
