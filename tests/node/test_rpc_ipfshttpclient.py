"""ipfshttpclient 0.7.0 against a real `chorus daemon`: the Kubo RPC subset of node/rpc.py.

Everything goes through `ipfshttpclient.Client` itself (its multipart encoding, its
`True`/`False` booleans, its NDJSON parsing, its exceptions), except the hostile
requests no client would send, which are made by hand. CIDs are checked against the
committed reference vectors (tests/vectors/unixfs.json) and against `chorus add`.
"""

from __future__ import annotations

import base64
import io
import json
import os
import warnings
from pathlib import Path

import pytest
import requests

from protocol.cid import DAG_PB, make_cid, parse_cid
from protocol.dagpb import decode_node
from tests.daemons import DaemonProcess
from tests.vectors.content import deterministic_chunks

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ipfshttpclient
    from ipfshttpclient import exceptions as rpc_errors

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # urllib3 vs ipfshttpclient 0.7.0
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "unixfs.json").read_text("utf-8"))
#: The upload limit the test daemon is configured with (config.json rpc.max_upload_bytes):
#: above the largest vector file (45.6 MB), far below the 16 GiB default.
UPLOAD_LIMIT = 48 * 1024 * 1024
PROFILES = {
    "kubo-v0": {},
    "v1-raw": {"cid_version": 1, "raw_leaves": True},
}
CLI_FLAGS = {"kubo-v0": (), "v1-raw": ("--cid-version", "1", "--raw-leaves")}


def auth_headers(node: DaemonProcess) -> dict[str, str]:
    """The node's API token as a Bearer header, if the node has one (node/auth.py)."""
    token_file = node.data / "api_token"
    if token_file.exists():
        return {"Authorization": f"Bearer {token_file.read_text('utf-8').strip()}"}
    return {}


def multiaddr_of(node: DaemonProcess) -> str:
    host, port = node.api.removeprefix("http://").rsplit(":", 1)
    return f"/ip4/{host}/tcp/{port}/http"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("rpc") / "node"
    daemon = DaemonProcess(data)
    config = json.loads((data / "config.json").read_text("utf-8"))
    config["rpc"] = {"max_upload_bytes": UPLOAD_LIMIT}
    (data / "config.json").write_text(json.dumps(config), "utf-8")
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def client(node: DaemonProcess):
    # Client(), not connect(): connect() refuses every daemon version outside
    # [0.4.23, 0.8.0), which excludes both chorus and every Kubo since 2020.
    with ipfshttpclient.Client(multiaddr_of(node), headers=auth_headers(node)) as c:
        yield c


@pytest.fixture(scope="module")
def vector_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("vectors")
    paths = {}
    for case in VECTORS["files"]:
        path = folder / case["name"]
        with path.open("wb") as out:
            if "text" in case:
                out.write(case["text"].encode("utf-8"))
            else:
                for piece in deterministic_chunks(case["size"], case["seed"]):
                    out.write(piece)
        paths[case["name"]] = path
    return paths


def write_tree(root: Path, case: dict) -> Path:
    for entry in case["entries"]:
        path = root / entry["path"]
        if entry.get("dir"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if "text" in entry:
            path.write_bytes(entry["text"].encode("utf-8"))
        else:
            path.write_bytes(b"".join(deterministic_chunks(entry["size"], entry["seed"])))
    return root / case["name"]


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    case = next(c for c in VECTORS["directories"] if c["name"] == "album")
    return write_tree(tmp_path_factory.mktemp("tree"), case), case


def status_of(exc: rpc_errors.CommunicationError) -> int:
    return exc.original.response.status_code


# -- node ------------------------------------------------------------------------------------


def test_connect_refuses_the_version_so_client_is_the_way(node: DaemonProcess) -> None:
    with pytest.raises(rpc_errors.VersionMismatch):
        ipfshttpclient.connect(multiaddr_of(node), headers=auth_headers(node))


def test_version_and_id_look_like_kubo(node: DaemonProcess, client) -> None:
    version = client.version()
    assert set(version) >= {"Version", "Commit", "Repo", "System", "Golang"}
    assert version["Version"] == "0.1.0" and "/" in version["System"]
    ident = client.id()
    assert ident["ID"] == node.peer_id
    key = base64.b64decode(ident["PublicKey"])
    assert key[:4] == b"\x08\x01\x12\x20" and len(key) == 36  # libp2p protobuf, Ed25519
    assert ident["Addresses"] and all(
        a.endswith(f"/p2p/{node.peer_id}") for a in ident["Addresses"]
    )
    assert ident["AgentVersion"].startswith("chorus/")
    assert ident["ProtocolVersion"] == "ipfs/0.1.0"
    assert "/ipfs/bitswap/1.2.0" in ident["Protocols"]
    assert client.id(node.peer_id)["ID"] == node.peer_id
    with pytest.raises(rpc_errors.ErrorResponse, match="only for itself"):
        client.id("12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp")


def test_swarm_peers_of_a_lone_node(client) -> None:
    assert client.swarm.peers()["Peers"] == []


# -- add -------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_add_files_gives_the_reference_cids(
    node: DaemonProcess, client, vector_files: dict[str, Path], profile: str
) -> None:
    for case in VECTORS["files"]:
        path = vector_files[case["name"]]
        added = client.add(str(path), **PROFILES[profile])
        expected = case["cids"][profile]
        assert added["Hash"] == expected, case["name"]
        assert added["Name"] == case["name"]
        assert int(added["Size"]) >= case["size"]
        if case["size"] <= 1_000_000:  # the CLI goes through the same daemon
            assert node.add(path, *CLI_FLAGS[profile]) == expected, case["name"]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_add_directory_gives_the_reference_cids(
    node: DaemonProcess, client, album: tuple[Path, dict], profile: str
) -> None:
    root, case = album
    added = client.add(str(root), recursive=True, **PROFILES[profile])
    expected = case["cids"][profile]
    assert {item["Name"]: item["Hash"] for item in added} == expected["paths"]
    assert added[-1]["Name"] == "album" and added[-1]["Hash"] == expected["root"]
    assert node.add(root, "-r", *CLI_FLAGS[profile]) == expected["root"]


def test_wrap_with_directory(client, album: tuple[Path, dict], tmp_path: Path) -> None:
    root, case = album
    expected = case["cids"]["kubo-v0"]
    added = client.add(str(root), recursive=True, wrap_with_directory=True)
    wrapper = added[-1]
    assert wrapper["Name"] == ""
    assert {item["Name"]: item["Hash"] for item in added[:-1]} == expected["paths"]
    links = decode_node(client.block.get(wrapper["Hash"])).links
    assert [(link.name, str(link.cid)) for link in links] == [("album", expected["root"])]

    song = tmp_path / "song.txt"
    song.write_bytes(b"hello world\n")
    file_entry, wrapped = client.add(str(song), wrap_with_directory=True)
    assert file_entry == {
        "Name": "song.txt",
        "Hash": "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
        "Size": "20",
    }
    assert wrapped["Name"] == ""
    # Wrapping a file is adding a directory that holds only it.
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "song.txt").write_bytes(b"hello world\n")
    assert client.add(str(folder), recursive=True)[-1]["Hash"] == wrapped["Hash"]


def test_add_options(client, tmp_path: Path) -> None:
    data = os.urandom(70_000)
    expected = str(make_cid(data, version=1))
    track = tmp_path / "take.bin"
    track.write_bytes(data)
    # only-hash: a CID, nothing stored
    assert client.add(str(track), only_hash=True, cid_version=1, raw_leaves=True)["Hash"] == (
        expected
    )
    with pytest.raises(rpc_errors.ErrorResponse, match="not found"):
        client.block.stat(expected, offline=True)
    # cid-version=1 alone: ipfshttpclient sends raw-leaves=False, so dag-pb leaves, as Kubo
    v1 = client.add(str(track), cid_version=1)["Hash"]
    assert parse_cid(v1).version == 1 and parse_cid(v1).codec.code == DAG_PB
    # an unnamed stream is named by its CID, as `ipfs add` names stdin
    unnamed = client.add(io.BytesIO(b"hello world\n"))
    assert unnamed["Name"] == unnamed["Hash"] == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    assert client.add_bytes(b"hello world\n") == unnamed["Hash"]
    several = client.add(str(track), io.BytesIO(b"x"))
    assert [item["Name"] for item in several] == ["take.bin", several[1]["Hash"]]
    # what chorus cannot honour is refused, not silently ignored
    with pytest.raises(rpc_errors.ErrorResponse, match="size-262144"):
        client.add(str(track), chunker="rabin-262144-524288-1048576")
    with pytest.raises(rpc_errors.ErrorResponse, match="size-262144"):
        client.add(str(track), chunker="size-1024")
    assert client.add(str(track), chunker="size-262144")["Hash"] == client.add(str(track))["Hash"]
    with pytest.raises(rpc_errors.ErrorResponse, match="trickle"):
        client.add(str(track), trickle=True)
    with pytest.raises(rpc_errors.ErrorResponse, match="nocopy"):
        client.add(str(track), nocopy=True)


# -- cat and get -------------------------------------------------------------------------------


def test_cat_with_offset_and_length(client, album: tuple[Path, dict]) -> None:
    root, case = album
    cids = case["cids"]["kubo-v0"]["paths"]
    track = (root / "02-track.bin").read_bytes()  # 600000 bytes: three chunks
    cid = cids["album/02-track.bin"]
    assert client.cat(cid) == track
    assert client.cat(cid, offset=262_000, length=1000) == track[262_000:263_000]
    assert client.cat(cid, offset=599_990) == track[599_990:]
    assert client.cat(cid, length=0) == b""
    assert client.cat(cid, offline=True, offset=5, length=5) == track[5:10]
    assert client.cat(f"/ipfs/{cids['album']}/cover/notes/liner.txt") == (
        b"Liner notes.\nRecorded live.\n"
    )
    with pytest.raises(rpc_errors.ErrorResponse, match="past the end"):
        client.cat(cid, offset=600_001)
    with pytest.raises(rpc_errors.ErrorResponse, match="this dag node is a directory"):
        client.cat(cids["album"])
    with pytest.raises(rpc_errors.ErrorResponse, match="no link named"):
        client.cat(f"{cids['album']}/nope.txt")


def test_get_into_a_directory(client, album: tuple[Path, dict], tmp_path: Path) -> None:
    root, case = album
    cids = case["cids"]["kubo-v0"]
    for compress, target in ((False, tmp_path / "plain"), (True, tmp_path / "gz")):
        target.mkdir()
        client.get(cids["root"], target=str(target), compress=compress)
        got = target / cids["root"]
        for entry in case["entries"]:
            rel = entry["path"].removeprefix("album/")
            if entry.get("dir"):
                assert (got / rel).is_dir()
            else:
                assert (got / rel).read_bytes() == (root / rel).read_bytes(), rel
    single = tmp_path / "single"
    single.mkdir()
    client.get(f"/ipfs/{cids['root']}/02-track.bin", target=str(single))
    assert (single / "02-track.bin").read_bytes() == (root / "02-track.bin").read_bytes()


# -- blocks ----------------------------------------------------------------------------------


def test_block_put_get_stat_round_trip(client) -> None:
    data = b"a block of the co-op " + os.urandom(16)
    put = client.block.put(io.BytesIO(data))
    assert put["Key"] == str(make_cid(data, version=1)) and put["Size"] == len(data)
    assert client.block.get(put["Key"]) == data
    assert client.block.stat(put["Key"]) == {"Key": put["Key"], "Size": len(data)}
    # a dag-pb block under the legacy format=v0 and under cid-codec=dag-pb
    directory = b"\x0a\x02\x08\x01"  # the empty UnixFS directory
    v0 = client.block.put(io.BytesIO(directory), opts={"format": "v0"})
    assert v0["Key"] == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    v1 = client.block.put(io.BytesIO(directory), opts={"cid-codec": "dag-pb"})
    assert v1["Key"] == str(make_cid(directory, version=1, codec=DAG_PB))
    sha512 = client.block.put(io.BytesIO(data), opts={"mhtype": "sha2-512"})
    assert parse_cid(sha512["Key"]).hashfun.name == "sha2-512"
    assert client.block.get(sha512["Key"]) == data
    # pin=true pins it
    pinned = client.block.put(io.BytesIO(b"pin me " + os.urandom(8)), opts={"pin": True})
    assert client.pin.ls(pinned["Key"])["Keys"][pinned["Key"]]["Type"] == "recursive"
    # block/rm (not in ipfshttpclient 0.7.0's API, but in its transport)
    removed = client._client.request("/block/rm", (put["Key"],), decoder="json")
    assert removed == [{"Hash": put["Key"], "Error": ""}]
    with pytest.raises(rpc_errors.ErrorResponse, match="not found"):
        client.block.get(put["Key"], offline=True)


def test_block_put_refuses_mismatched_and_oversized_blocks(client) -> None:
    with pytest.raises(rpc_errors.ErrorResponse, match="does not decode as dag-pb"):
        client.block.put(io.BytesIO(b"\xff not protobuf"), opts={"cid-codec": "dag-pb"})
    with pytest.raises(rpc_errors.ErrorResponse, match="does not decode as dag-pb"):
        client.block.put(io.BytesIO(b"\xff not protobuf"), opts={"format": "v0"})
    with pytest.raises(rpc_errors.ErrorResponse, match="dag-cbor"):
        client.block.put(io.BytesIO(b"\xa0"), opts={"cid-codec": "dag-cbor"})
    with pytest.raises(rpc_errors.ErrorResponse, match="unrecognized multihash"):
        client.block.put(io.BytesIO(b"x"), opts={"mhtype": "sha2-257"})
    big = os.urandom(1024 * 1024 + 1)
    with pytest.raises(rpc_errors.ErrorResponse, match="over 1MiB"):
        client.block.put(io.BytesIO(big))
    assert client.block.put(io.BytesIO(big), opts={"allow-big-block": True})["Size"] == len(big)
    huge = io.BytesIO(bytes(2 * 1024 * 1024 + 1))
    with pytest.raises(rpc_errors.ErrorResponse, match=r"2097153 bytes.*over 2097152") as caught:
        client.block.put(huge, opts={"allow-big-block": True})
    assert status_of(caught.value) == 500
    with pytest.raises(rpc_errors.ErrorResponse, match="not found"):
        client.block.stat(str(make_cid(bytes(2 * 1024 * 1024 + 1))), offline=True)


# -- pins and gc ---------------------------------------------------------------------------


def test_pins(client, tmp_path: Path) -> None:
    track = tmp_path / "loose.bin"
    track.write_bytes(os.urandom(300_000))
    root = client.add(str(track), pin=False)["Hash"]
    assert root not in client.pin.ls(type="recursive")["Keys"]
    with pytest.raises(rpc_errors.ErrorResponse, match="is not pinned"):
        client.pin.ls(root)
    assert client.pin.add(root) == {"Pins": [root]}
    assert client.pin.ls(root)["Keys"] == {root: {"Type": "recursive"}}
    leaves = [str(link.cid) for link in decode_node(client.block.get(root)).links]
    everything = client.pin.ls()["Keys"]
    assert all(everything[leaf]["Type"] == "indirect" for leaf in leaves)
    assert client.pin.ls(type="indirect")["Keys"][leaves[0]] == {"Type": "indirect"}
    with pytest.raises(rpc_errors.ErrorResponse, match="recursively"):
        client.pin.rm(root, recursive=False)
    assert client.pin.rm(root) == {"Pins": [root]}
    with pytest.raises(rpc_errors.ErrorResponse, match="not pinned"):
        client.pin.rm(root)
    assert client.pin.add(leaves[0], recursive=False) == {"Pins": [leaves[0]]}
    assert client.pin.ls(type="direct")["Keys"][leaves[0]] == {"Type": "direct"}
    assert client.pin.rm(leaves[0], recursive=False) == {"Pins": [leaves[0]]}
    missing = str(make_cid(os.urandom(32)))
    with pytest.raises(rpc_errors.ErrorResponse, match="not found"):
        client.pin.add(missing, offline=True)
    # with progress the answer is a stream: the error comes as its last line
    with pytest.raises(rpc_errors.PartialErrorResponse, match="not found"):
        client._client.request(
            "/pin/add", (missing,), opts={"progress": True}, offline=True, decoder="json"
        )


def test_repo_gc(client, tmp_path: Path) -> None:
    keep, drop = tmp_path / "keep.bin", tmp_path / "drop.bin"
    keep.write_bytes(os.urandom(10_000))
    drop.write_bytes(os.urandom(10_000))
    kept = client.add(str(keep), cid_version=1, raw_leaves=True)["Hash"]
    dropped = client.add(str(drop), cid_version=1, raw_leaves=True, pin=False)["Hash"]
    removed = {item["Key"]["/"] for item in client.repo.gc()}
    assert dropped in removed and kept not in removed
    with pytest.raises(rpc_errors.ErrorResponse, match="not found"):
        client.block.stat(dropped, offline=True)
    assert client.cat(kept) == keep.read_bytes()
    assert client.repo.gc(quiet=True) is None


# -- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.cat("not-a-cid"),
        lambda c: c.cat("/ipns/example.com"),
        lambda c: c.block.get("QmThisIsNotACid"),
        lambda c: c.block.stat("bafy" + "!" * 50),
        lambda c: c.pin.add("zzzz"),
        lambda c: c.pin.rm("Qm"),
        lambda c: c.cat("Qm" + "1" * 600),
    ],
)
def test_bad_cids_are_clear_errors(client, call) -> None:
    with pytest.raises(rpc_errors.ErrorResponse) as caught:
        call(client)
    message = str(caught.value)
    assert "CID" in message or "content path" in message
    assert client.version()["Version"]


def test_unknown_endpoints_and_methods(node: DaemonProcess, client) -> None:
    headers = auth_headers(node)
    answer = requests.post(f"{node.api}/api/v0/no/such/command", headers=headers, timeout=10)
    assert answer.status_code == 404 and answer.text == "404 page not found\n"
    with pytest.raises(rpc_errors.StatusError) as caught:
        client._client.request("/files/ls", decoder="json")
    assert status_of(caught.value) == 404
    for method in ("GET", "PUT", "DELETE"):
        answer = requests.request(method, f"{node.api}/api/v0/version", headers=headers, timeout=10)
        assert answer.status_code == 405, method
        assert answer.headers["Allow"] == "POST"
    bad = requests.post(f"{node.api}/api/v0/cat?arg=x&offset=minus", headers=headers, timeout=10)
    assert bad.status_code == 400 and bad.json()["Code"] == 1 and bad.json()["Type"] == "error"
    missing = requests.post(f"{node.api}/api/v0/block/get", headers=headers, timeout=10)
    assert missing.status_code == 400 and "required" in missing.json()["Message"]
    flag = requests.post(f"{node.api}/api/v0/pin/ls?stream=perhaps", headers=headers, timeout=10)
    assert flag.status_code == 400 and "boolean" in flag.json()["Message"]


def form(parts: list[tuple[str, str, bytes]], boundary: str = "chorus-test-boundary") -> bytes:
    body = b""
    for name, content_type, data in parts:
        disposition = f'form-data; name="file"; filename="{name}"'
        body += (
            (
                f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode()


MULTIPART = {"Content-Type": "multipart/form-data; boundary=chorus-test-boundary"}
FILE = "application/octet-stream"
DIRECTORY = "application/x-directory"


@pytest.mark.parametrize(
    ("headers", "body", "needle"),
    [
        ({"Content-Type": "text/plain"}, b"hello", "expected a multipart/form-data body"),
        ({"Content-Type": "multipart/form-data"}, b"hello", "no usable boundary"),
        (MULTIPART, b"not multipart at all", "malformed multipart body"),
        (MULTIPART, form([("a.txt", FILE, b"abc")])[:-30], "ends before its closing boundary"),
        (MULTIPART, form([]), "no file in the upload"),
        (MULTIPART, form([("../escape.txt", FILE, b"x")]), "refusing upload path"),
        (MULTIPART, form([("a%2F..%2F..%2Fescape.txt", FILE, b"x")]), "refusing upload path"),
        (MULTIPART, form([("a.txt", FILE, b"1"), ("a.txt", FILE, b"2")]), "twice"),
        (MULTIPART, form([("a", FILE, b"1"), ("a/b", FILE, b"2")]), "which is a file"),
        (
            MULTIPART,
            form(
                [
                    ("d", DIRECTORY, b""),
                    ("d/l", "application/symlink", b"/etc"),
                    ("d/l/passwd", FILE, b"owned"),
                ]
            ),
            "which is a symlink",
        ),
        (MULTIPART, form([("x" * 300, FILE, b"x")]), "longer than 255 bytes"),
        (MULTIPART, form([("", DIRECTORY, b"")]), "needs a filename"),
        (
            {"Content-Type": "multipart/form-data; boundary=chorus-test-boundary"},
            b'--chorus-test-boundary\r\nContent-Disposition: form-data; name="file"; '
            b'filename="a"\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n'
            b"--inner--\r\n\r\n--chorus-test-boundary--\r\n",
            "nested multipart",
        ),
    ],
)
def test_malformed_uploads_are_refused(node: DaemonProcess, client, headers, body, needle) -> None:
    answer = requests.post(
        f"{node.api}/api/v0/add", data=body, headers={**headers, **auth_headers(node)}, timeout=30
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["Type"] == "error" and needle in answer.json()["Message"]
    assert not list(node.data.glob(".add-*")), "staging left behind"
    assert not (node.data.parent / "escape.txt").exists()
    assert client.id()["ID"] == node.peer_id  # still serving


def test_symlinks_and_directories_by_hand(node: DaemonProcess, client, tmp_path: Path) -> None:
    body = form(
        [
            ("tree", DIRECTORY, b""),
            ("tree%2Fnote.txt", FILE, b"note\n"),
            ("tree%2Flink", "application/symlink", b"note.txt"),
            ("tree%2Fempty", DIRECTORY, b""),
        ]
    )
    answer = requests.post(
        f"{node.api}/api/v0/add", data=body, headers={**MULTIPART, **auth_headers(node)}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert [line["Name"] for line in lines] == ["tree/link", "tree/note.txt", "tree/empty", "tree"]
    client.get(lines[-1]["Hash"], target=str(tmp_path))
    got = tmp_path / lines[-1]["Hash"]
    assert os.readlink(got / "link") == "note.txt"
    assert (got / "note.txt").read_bytes() == b"note\n" and (got / "empty").is_dir()


class Zeros(io.RawIOBase):
    """A large file of zeros that costs no memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


def test_upload_over_the_limit_is_413(node: DaemonProcess, client) -> None:
    with pytest.raises(rpc_errors.ErrorResponse, match="larger than this node accepts") as caught:
        client.add(Zeros(UPLOAD_LIMIT + 1024 * 1024))
    assert status_of(caught.value) == 413
    with pytest.raises(rpc_errors.ErrorResponse) as caught:
        client.block.put(Zeros(UPLOAD_LIMIT + 1))
    assert status_of(caught.value) == 413
    assert not list(node.data.glob(".add-*")), "staging left behind"
    assert client.id()["ID"] == node.peer_id
