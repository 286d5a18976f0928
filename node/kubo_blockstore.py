"""The `kubo` blockstore backend: blocks and pins kept by a Kubo node, reached over its RPC API.

A member whose embedded store (node/blockstore.py) has outgrown one machine points
chorus at an existing Kubo daemon, an IPFS Cluster proxy, or another chorus node:
config.json `"blockstore": {"kind": "kubo", "api": "http://127.0.0.1:5001"}`.
`KuboBlockstore` has the embedded store's interface (has/get/put/put_many/size_of/
delete/all_cids/stat/pin_*/gc/verify/batch/close), so the exchange, the gateway, the
RPC and the CLI use it unchanged. It speaks to the remote through ipfshttpclient
(`block/put|get|stat|rm`, `pin/add|rm|ls`, `repo/gc|stat`, `refs/local`).

Theory of operation
-------------------
* The remote is storage, not an authority. A block is verified against its CID
  before it is sent; every block read back is re-hashed against the CID it was asked
  for (a lie is `StoreCorrupt`, never returned); the CID the remote answers a put
  with must be the one chorus computed; CIDs it lists are parsed and normalised.
* Reads and pins ask with `offline=true`, so the remote never wanders off into the
  IPFS network to find a block: a block it lacks is `BlockNotFound` at once, and a
  recursive pin of an incomplete DAG fails as it does on the embedded store.
* Errors: the remote's messages are mapped onto chorus's typed errors (missing
  block, pin refusals); an unreachable or unauthorised remote is a `RepoError`
  that names the address.
* Batches cannot hide staged blocks from a remote store: `BlockBatch.put` sends each
  block as it comes, and it is visible (and served) from then on. Pins are added at
  `commit`, so an aborted or failed batch pins nothing (a commit that fails half
  way removes the pins it added), and its blocks stay on the remote, unpinned, until
  the remote's garbage collection takes them. `new_blocks`/`new_bytes` count what
  was sent: the RPC cannot say whether the remote already had a block.
* Garbage collection, quota and the pin set are the remote's: `gc()` runs the
  remote's own gc (which also collects anything else unpinned there), and `stat()`
  reports its figures with no chorus quota.
* Threads: every method is synchronous and may be called from any thread (the
  daemon calls them through `trio.to_thread`); each thread gets its own HTTP
  session, since requests' sessions are not made to be shared.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from multiformats import CID

from protocol.cid import MAX_BLOCK_SIZE, cid_from_multihash, cid_to_text, parse_cid, verify_block
from protocol.errors import BlockError, BlockTooLarge, InvalidCID

from .blockstore import DEFAULT_COMMIT_BYTES, Pin, PinKind, StoreStat, VerifyReport
from .errors import BlockNotFound, PinError, RepoError, StoreCorrupt

with warnings.catch_warnings():  # ipfshttpclient 0.7.0 warns about its own version checks
    warnings.simplefilter("ignore")
    import ipfshttpclient
    from ipfshttpclient import exceptions as rpc_errors
    from ipfshttpclient.http_common import multiaddr_to_url_data

__all__ = ["KuboBatch", "KuboBlockstore", "api_multiaddr"]

_IDENTITY = 0x00
#: Above this, Kubo's `block/put` wants `allow-big-block=true` (chorus's RPC too).
_SOFT_BLOCK_LIMIT = 1024 * 1024
#: Keys of config.json's `"blockstore"` section for this backend.
_CONFIG_KEYS = frozenset({"kind", "api", "authorization", "token_file", "timeout"})
_PIN_ORDER = {"recursive": 0, "direct": 1, "indirect": 2}

T = TypeVar("T")


class _Remote(Exception):
    """The remote answered with an error message (mapped by the caller)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _missing(message: str) -> bool:
    lowered = message.lower()
    return "not found" in lowered or "could not find" in lowered


def _status_of(exc: rpc_errors.CommunicationError) -> int | None:
    response = getattr(exc.original, "response", None)
    return getattr(response, "status_code", None)


def api_multiaddr(api: str) -> tuple[str, str]:
    """(multiaddr, base path) for ipfshttpclient from an RPC address.

    Takes a URL (`http://127.0.0.1:5001`, `https://cluster.example:9095/api/v0`) or a
    multiaddr (`/ip4/127.0.0.1/tcp/5001`, as Kubo writes in its `api` file).
    """
    text = api.strip()
    if text.startswith("/"):
        return text, "api/v0"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RepoError(
            f"blockstore api {api!r} is not an http(s) URL or a multiaddr "
            "(e.g. http://127.0.0.1:5001 or /ip4/127.0.0.1/tcp/5001)"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RepoError(f"blockstore api {api!r} has an invalid port") from None
    try:
        host = ipaddress.ip_address(parts.hostname)
        proto = "ip4" if host.version == 4 else "ip6"
    except ValueError:
        proto = "dns"
    base = parts.path.strip("/") or "api/v0"
    return f"/{proto}/{parts.hostname}/tcp/{port}/{parts.scheme}", base


class KuboBlockstore:
    """The blockstore interface over a Kubo RPC endpoint; see the module docstring.

    `api` is the RPC address (URL or multiaddr); `authorization` the value of an
    `Authorization` header to send with every request (a chorus node's
    `Bearer <api_token>`, or Kubo's `API.Authorizations` secret); `timeout` the
    seconds to wait on any one request (gc, verify and listings wait longer).
    """

    def __init__(
        self, api: str, *, authorization: str | None = None, timeout: float = 120.0
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.api = api
        self.quota: int | None = None
        self.timeout = timeout
        self.long_timeout = max(timeout, 3600.0)
        self._addr, self._base = api_multiaddr(api)
        try:  # what the client would refuse on first use, refused now
            multiaddr_to_url_data(self._addr, self._base)
        except rpc_errors.AddressError:
            raise RepoError(
                f"blockstore api {api!r}: ipfshttpclient cannot use the address {self._addr}"
            ) from None
        self._headers = {"Authorization": authorization} if authorization else {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[ipfshttpclient.Client] = []
        self._closed = False

    @classmethod
    def from_config(cls, spec: Mapping[str, Any], *, source: Path) -> KuboBlockstore:
        """Build from config.json's `"blockstore"` section (`source` names the file).

        {"kind": "kubo", "api": "http://127.0.0.1:5001",
         "authorization": "Bearer ...",      # optional, or:
         "token_file": "/path/to/api_token", # optional: sent as a Bearer token
         "timeout": 120}                     # optional, seconds
        """
        unknown = sorted(set(spec) - _CONFIG_KEYS)
        if unknown:
            raise RepoError(f"{source}: unknown blockstore keys {unknown} (kubo backend)")
        api = spec.get("api")
        if not isinstance(api, str) or not api.strip():
            raise RepoError(
                f"{source}: blockstore.api must be the Kubo RPC address, e.g. http://127.0.0.1:5001"
            )
        authorization = spec.get("authorization")
        if authorization is not None and not isinstance(authorization, str):
            raise RepoError(f"{source}: blockstore.authorization must be a string")
        token_file = spec.get("token_file")
        if token_file is not None:
            if authorization is not None:
                raise RepoError(f"{source}: give blockstore.authorization or token_file, not both")
            if not isinstance(token_file, str):
                raise RepoError(f"{source}: blockstore.token_file must be a path")
            path = (source.parent / Path(token_file).expanduser()).resolve()
            try:
                token = path.read_text("utf-8").strip()
            except OSError as exc:
                raise RepoError(
                    f"{source}: cannot read blockstore.token_file {path}: {exc}"
                ) from None
            if not token:
                raise RepoError(f"{source}: blockstore.token_file {path} is empty")
            authorization = f"Bearer {token}"
        timeout = spec.get("timeout", 120.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise RepoError(f"{source}: blockstore.timeout must be a positive number of seconds")
        return cls(api, authorization=authorization, timeout=float(timeout))

    # -- the connection --------------------------------------------------------------------

    def _client(self) -> ipfshttpclient.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            with self._lock:
                self._check_open()
                client = ipfshttpclient.Client(
                    self._addr,
                    self._base,
                    headers=self._headers,
                    timeout=self.timeout,
                    session=True,
                )
                self._clients.append(client)
            self._local.client = client
        return client

    def _call(self, what: str, run: Callable[[ipfshttpclient.Client], T]) -> T:
        """Run one request; transport failures become RepoError, error answers _Remote."""
        self._check_open()
        try:
            return run(self._client())
        except rpc_errors.ErrorResponse as exc:
            status = _status_of(exc)
            if status in (401, 403):
                raise RepoError(
                    f"the Kubo RPC API at {self.api} refused {what} ({status}): {exc}; "
                    "set blockstore.authorization or token_file in config.json"
                ) from None
            raise _Remote(str(exc), status) from None
        except rpc_errors.TimeoutError:
            raise RepoError(
                f"the Kubo RPC API at {self.api} did not answer {what} in time"
            ) from None
        except (rpc_errors.ConnectionError, rpc_errors.ProtocolError) as exc:
            raise RepoError(
                f"cannot reach the Kubo RPC API at {self.api} ({what}): {exc}"
            ) from None
        except rpc_errors.StatusError as exc:
            raise RepoError(f"the Kubo RPC API at {self.api} refused {what}: {exc}") from None
        except rpc_errors.DecodingError as exc:
            raise RepoError(
                f"the Kubo RPC API at {self.api} answered {what} with something unreadable: {exc}"
            ) from None

    def _remote_error(self, what: str, exc: _Remote) -> RepoError:
        return RepoError(f"the Kubo RPC API at {self.api} failed {what}: {exc.message}")

    def _check_open(self) -> None:
        if self._closed:
            raise RepoError(f"blockstore at {self.api} is closed")

    def close(self) -> None:
        """Close every HTTP session. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()

    def __enter__(self) -> KuboBlockstore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KuboBlockstore({self.api!r})"

    # -- reads -----------------------------------------------------------------------------

    def has(self, cid: CID) -> bool:
        """True if the remote holds the block (asked offline; no bytes move)."""
        if cid.hashfun.code == _IDENTITY:
            return True
        try:
            self._call("block/stat", lambda c: c.block.stat(cid_to_text(cid), offline=True))
        except _Remote as exc:
            if _missing(exc.message):
                return False
            raise self._remote_error(f"block/stat {cid}", exc) from None
        return True

    def get(self, cid: CID) -> bytes:
        """The block's bytes, verified against `cid`: BlockNotFound if the remote lacks
        it, StoreCorrupt if what it sends does not hash to `cid`."""
        if cid.hashfun.code == _IDENTITY:
            return bytes(cid.raw_digest)
        try:
            data = self._call("block/get", lambda c: c.block.get(cid_to_text(cid), offline=True))
        except _Remote as exc:
            if _missing(exc.message):
                raise BlockNotFound(cid) from None
            raise self._remote_error(f"block/get {cid}", exc) from None
        data = bytes(data)
        try:
            verify_block(cid, data)
        except BlockError as exc:
            raise StoreCorrupt(
                f"the Kubo RPC API at {self.api} sent bytes for {cid} that fail verification: "
                f"{exc}",
                cids=[cid],
            ) from None
        return data

    def size_of(self, cid: CID) -> int:
        """The block's size as the remote reports it (`get` verifies the bytes)."""
        if cid.hashfun.code == _IDENTITY:
            return len(cid.raw_digest)
        try:
            answer = self._call(
                "block/stat", lambda c: c.block.stat(cid_to_text(cid), offline=True)
            )
        except _Remote as exc:
            if _missing(exc.message):
                raise BlockNotFound(cid) from None
            raise self._remote_error(f"block/stat {cid}", exc) from None
        size = answer.get("Size")
        if type(size) is not int or size < 0:
            raise RepoError(f"the Kubo RPC API at {self.api} reported size {size!r} for {cid}")
        return size

    def all_cids(self) -> Iterator[CID]:
        """Every block the remote holds, as CIDv1 raw over its multihash (`refs/local`)."""
        listing = self._call(
            "refs/local",
            lambda c: c.unstable.refs.local(stream=True, timeout=self.long_timeout),
        )
        with listing:
            for item in self._iterate("refs/local", listing):
                error = item.get("Err") or ""
                if error:
                    raise RepoError(f"the Kubo RPC API at {self.api} listed an error: {error}")
                yield self._normalise(item.get("Ref"), "refs/local")

    def _iterate(self, what: str, items: Iterable[Any]) -> Iterator[Any]:
        iterator = iter(items)
        while True:
            try:
                item = self._call(what, lambda _c: next(iterator, None))
            except _Remote as exc:
                raise self._remote_error(what, exc) from None
            if item is None:
                return
            yield item

    def _normalise(self, text: Any, what: str) -> CID:
        try:
            cid = parse_cid(text if isinstance(text, str) else "")
        except InvalidCID as exc:
            raise RepoError(f"the Kubo RPC API at {self.api} sent {what} {text!r}: {exc}") from None
        return cid_from_multihash(bytes(cid.digest))

    def stat(self) -> StoreStat:
        """The remote's block count and size (`repo/stat`); chorus sets no quota on it."""
        try:
            answer = self._call("repo/stat", lambda c: c.repo.stat(timeout=self.long_timeout))
        except _Remote as exc:
            raise self._remote_error("repo/stat", exc) from None
        blocks, size = answer.get("NumObjects"), answer.get("RepoSize")
        if type(blocks) is not int or type(size) is not int:
            raise RepoError(f"the Kubo RPC API at {self.api} sent an unreadable repo/stat")
        return StoreStat(blocks=blocks, bytes=size, quota=None)

    # -- writes ----------------------------------------------------------------------------

    def put(self, cid: CID, data: bytes) -> bool:
        """Verify, then store one block; False if the remote already had it.

        Raises BlockMismatch/BlockTooLarge (nothing sent), StoreCorrupt if the
        remote names the block differently."""
        data = bytes(data)
        verify_block(cid, data)
        if cid.hashfun.code == _IDENTITY or self.has(cid):
            return False
        self._send(cid, data)
        return True

    def _send(self, cid: CID, data: bytes) -> None:
        """`block/put` of verified bytes; the answer must name `cid`."""
        if cid.version == 0:
            opts: dict[str, Any] = {"format": "v0"}
        else:
            opts = {"cid-codec": cid.codec.name}
        opts["mhtype"] = cid.hashfun.name
        if len(data) > _SOFT_BLOCK_LIMIT:
            opts["allow-big-block"] = True
        try:
            answer = self._call("block/put", lambda c: c.block.put(io.BytesIO(data), opts=opts))
        except _Remote as exc:
            raise self._remote_error(f"block/put {cid}", exc) from None
        key = answer.get("Key")
        try:
            stored = parse_cid(key if isinstance(key, str) else "")
        except InvalidCID:
            stored = None
        if stored is None or bytes(stored) != bytes(cid):
            raise StoreCorrupt(
                f"the Kubo RPC API at {self.api} stored block {cid} as {key!r}: it does not "
                "honour cid-codec/mhtype (Kubo 0.13 or later is needed)",
                cids=[cid],
            )

    def put_many(
        self, blocks: Iterable[tuple[CID, bytes]], *, commit_bytes: int = DEFAULT_COMMIT_BYTES
    ) -> int:
        """Verify and send many blocks; return how many were sent. A refused block
        stops the rest (those already sent stay, unpinned: see the module docstring)."""
        with self.batch(commit_bytes=commit_bytes) as batch:
            for cid, data in blocks:
                batch.put(cid, data)
        return batch.new_blocks

    def batch(self, *, commit_bytes: int = DEFAULT_COMMIT_BYTES) -> KuboBatch:
        """A `KuboBatch`: blocks sent as they come, pins added on a clean exit."""
        self._check_open()
        return KuboBatch(self)

    def delete(self, cid: CID) -> None:
        """Remove one block (`block/rm`): BlockNotFound if absent, PinError if pinned."""
        if cid.hashfun.code == _IDENTITY:
            return
        try:
            lines = self._call(
                "block/rm",
                lambda c: c._client.request("/block/rm", (cid_to_text(cid),), decoder="json"),
            )
        except _Remote as exc:
            lines = [{"Error": exc.message}]
        for line in lines:
            error = line.get("Error") or ""
            if not error:
                continue
            if "pinned" in error.lower():
                raise PinError(f"cannot delete {cid}: {error}")
            if _missing(error):
                raise BlockNotFound(cid)
            raise RepoError(f"the Kubo RPC API at {self.api} could not remove {cid}: {error}")

    # -- pins ------------------------------------------------------------------------------

    def pin_add(self, cid: CID, *, recursive: bool = True) -> None:
        """Pin on the remote, offline: a recursive pin needs the whole DAG there
        (BlockNotFound otherwise), a direct one the block."""
        try:
            self._call(
                "pin/add",
                lambda c: c.pin.add(
                    cid_to_text(cid), recursive=recursive, offline=True, timeout=self.long_timeout
                ),
            )
        except _Remote as exc:
            if _missing(exc.message):
                raise BlockNotFound(cid, f"cannot pin it; the remote says: {exc.message}") from None
            raise PinError(f"cannot pin {cid}: {exc.message}") from None

    def pin_rm(self, cid: CID, *, recursive: bool = True) -> None:
        """Unpin on the remote; PinError if it is not pinned that way."""
        try:
            self._call("pin/rm", lambda c: c.pin.rm(cid_to_text(cid), recursive=recursive))
        except _Remote as exc:
            raise PinError(f"cannot unpin {cid}: {exc.message}") from None

    def pin_ls(self, kind: Literal["all", "recursive", "direct", "indirect"] = "all") -> list[Pin]:
        """The remote's pins of one kind, or all: recursive, then direct, then indirect."""
        if kind not in ("all", "recursive", "direct", "indirect"):
            raise ValueError(f"pin kind must be all, recursive, direct or indirect, not {kind!r}")
        try:
            answer = self._call("pin/ls", lambda c: c.pin.ls(type=kind, timeout=self.long_timeout))
        except _Remote as exc:
            raise self._remote_error("pin/ls", exc) from None
        keys = answer.get("Keys") or {}
        pins: list[Pin] = []
        for text, info in keys.items():
            found = str(info.get("Type", ""))
            if found.startswith("indirect"):
                found = "indirect"  # Kubo may say "indirect through <root>"
            if found not in _PIN_ORDER:
                raise RepoError(f"the Kubo RPC API at {self.api} sent pin type {found!r}")
            try:
                cid = parse_cid(text)
            except InvalidCID as exc:
                raise RepoError(f"the Kubo RPC API at {self.api} listed a bad pin: {exc}") from None
            pin_kind: PinKind = found  # type: ignore[assignment]
            pins.append(Pin(cid, pin_kind))
        pins.sort(key=lambda pin: _PIN_ORDER[pin.kind])
        return pins

    def _pinned(self, cid: CID) -> str | None:
        """How the remote pins `cid` ("recursive", "direct", "indirect"), or None."""
        try:
            answer = self._call(
                "pin/ls", lambda c: c.pin.ls(cid_to_text(cid), type="all", offline=True)
            )
        except _Remote as exc:
            if "not pinned" in exc.message.lower():
                return None
            raise self._remote_error(f"pin/ls {cid}", exc) from None
        for info in (answer.get("Keys") or {}).values():
            return str(info.get("Type", "")).split(" ")[0] or None
        return None

    # -- maintenance -----------------------------------------------------------------------

    def gc(self) -> list[CID]:
        """Run the remote's garbage collection; return what it removed (CIDv1 raw).

        The remote decides what is garbage: everything it holds that none of *its*
        pins reaches, including blocks chorus never sent."""
        try:
            answer = self._call("repo/gc", lambda c: c.repo.gc(timeout=self.long_timeout))
        except _Remote as exc:
            raise self._remote_error("repo/gc", exc) from None
        removed: list[CID] = []
        errors: list[str] = []
        for item in answer:
            if item.get("Error"):
                errors.append(str(item["Error"]))
                continue
            key = item.get("Key")
            text = key.get("/") if isinstance(key, Mapping) else key
            removed.append(self._normalise(text, "repo/gc"))
        if errors:
            raise RepoError(
                f"the Kubo RPC API at {self.api} reported gc errors after removing "
                f"{len(removed)} blocks: {'; '.join(errors[:5])}"
            )
        return removed

    def verify(self, *, structure: bool = False) -> VerifyReport:
        """Fetch and re-hash every block the remote lists (the only check that does not
        trust it). `structure=True` also reports what the remote's `repo/verify` says."""
        checked = 0
        total = 0
        corrupt: list[CID] = []
        problems: list[str] = []
        for cid in self.all_cids():
            checked += 1
            try:
                data = self._call(
                    "block/get", lambda c, x=cid: c.block.get(cid_to_text(x), offline=True)
                )
            except _Remote as exc:
                problems.append(f"{cid}: listed but not readable: {exc.message}")
                continue
            total += len(data)
            try:
                verify_block(cid, bytes(data))
            except BlockError as exc:
                corrupt.append(cid)
                problems.append(f"{cid}: {exc}")
        if structure:
            problems.extend(self._remote_verify())
        return VerifyReport(checked, total, tuple(corrupt), tuple(problems))

    def _remote_verify(self) -> list[str]:
        try:
            answer = self._call(
                "repo/verify",
                lambda c: c._client.request(
                    "/repo/verify", decoder="json", timeout=self.long_timeout
                ),
            )
        except _Remote as exc:
            return [f"remote repo/verify failed: {exc.message}"]
        found: list[str] = []
        for item in answer:
            if "Problems" in item:  # a chorus node
                found.extend(f"remote: {p}" for p in item.get("Problems") or [])
            elif item.get("Msg"):  # Kubo streams {"Msg", "Progress"}
                found.append(f"remote: {item['Msg']}")
        return found


class KuboBatch:
    """A batch on a remote store: blocks sent at once, pins added at `commit`.

    The interface of node/blockstore.py's BlockBatch, with one difference a remote
    store cannot avoid: blocks are visible as soon as they are put, and an abort
    leaves them on the remote, unpinned, for its gc to collect.
    """

    def __init__(self, store: KuboBlockstore) -> None:
        self._store = store
        self._sent: set[bytes] = set()
        self._pins: list[tuple[CID, bool]] = []
        self._state: Literal["open", "committed", "aborted"] = "open"
        #: Blocks sent to the remote by this batch (it may have had some already).
        self.new_blocks = 0
        #: Payload bytes of those blocks.
        self.new_bytes = 0

    def put(self, cid: CID, data: bytes) -> None:
        """Verify and send one block; any error aborts the batch (nothing pinned)."""
        self._check_open()
        try:
            data = bytes(data)
            verify_block(cid, data)
            self._send(cid, data)
        except BaseException:
            self.abort()
            raise

    def put_verified(self, cid: CID, data: bytes) -> None:
        """Send a block the caller has just hashed against `cid` (size still checked)."""
        self._check_open()
        try:
            if len(data) > MAX_BLOCK_SIZE:
                raise BlockTooLarge(
                    f"block {cid} is {len(data)} bytes; the limit is {MAX_BLOCK_SIZE}"
                )
            self._send(cid, bytes(data))
        except BaseException:
            self.abort()
            raise

    def _send(self, cid: CID, data: bytes) -> None:
        if cid.hashfun.code == _IDENTITY:
            return
        key = bytes(cid.digest)
        if key in self._sent:
            return
        self._store._send(cid, data)
        self._sent.add(key)
        self.new_blocks += 1
        self.new_bytes += len(data)

    def pin(self, cid: CID, *, recursive: bool = True) -> None:
        """Pin `cid` when the batch commits."""
        self._check_open()
        self._pins.append((cid, recursive))

    def commit(self) -> None:
        """Add the batch's pins. If one fails, the pins this commit added are removed
        again (pins that existed before are left alone) and the error is raised."""
        self._check_open()
        store = self._store
        changed: list[tuple[CID, bool, str | None]] = []
        try:
            for cid, recursive in self._pins:
                before = store._pinned(cid)
                if before == "recursive" or (before == "direct" and not recursive):
                    continue  # already pinned as asked
                store.pin_add(cid, recursive=recursive)
                changed.append((cid, recursive, before))
        except BaseException:
            for cid, recursive, before in reversed(changed):
                with contextlib.suppress(Exception):
                    store.pin_rm(cid, recursive=recursive)
                    if before == "direct":
                        store.pin_add(cid, recursive=False)
            self._state = "aborted"
            raise
        self._state = "committed"

    def abort(self) -> None:
        """Give up: nothing is pinned (pins wait for commit); the blocks already sent
        stay on the remote, unpinned, until its gc."""
        if self._state == "open":
            self._state = "aborted"

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"this block batch is already {self._state}")

    def __enter__(self) -> KuboBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
