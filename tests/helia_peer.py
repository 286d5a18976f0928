"""A real, independent IPFS peer (Helia, JS) that tests start on 127.0.0.1 and drive.

``HeliaPeer`` runs ``tests/helia/peer.mjs`` under the Node 22 that
``tests/helia/setup.sh`` installs (see ``tests/helia_ref.helia_node``): a Helia 7 node with
libp2p 3 over TCP only, Noise, Yamux, identify, ping and Bitswap; in-memory stores; no
bootstrap, DHT, relay, mDNS or delegated routing, so it never reaches past loopback.

    with HeliaPeer() as helia:
        cid = helia.add(size=1 << 20, seed="track")     # Kubo's `ipfs add` CID
        helia.connect("/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...")
        sha256_hex, size = helia.cat(cid, timeout_ms=10_000)

The API is synchronous and thread-safe (one command at a time, answered in order). From a
trio test whose own libp2p host must answer Helia meanwhile, call it off the event loop:
``await trio.to_thread.run_sync(helia.connect, addr)``; a blocking call made on the loop
would starve the host that Helia is talking to.

The process is always killed on exit (``stop()``, the context manager, or garbage
collection), with bounded waits.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
import time
import weakref
from collections import deque
from typing import IO, Any

from tests.helia_ref import HELIA_DIR, PROFILES, helia_node

PEER_MJS = HELIA_DIR / "peer.mjs"

START_TIMEOUT = 60.0  # node start + imports take ~1.5 s; generous for a loaded CI machine
COMMAND_TIMEOUT = 60.0  # for commands without a timeout_ms of their own
SLACK = 10.0  # added to a command's own timeout_ms before giving up on the process
STOP_TIMEOUT = 5.0


class HeliaError(RuntimeError):
    """peer.mjs answered ``{"error": ...}`` (the peer carries on), or the process failed."""


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


class HeliaPeer:
    """A Helia peer in a child process; ``start()`` (or ``with``) launches it."""

    def __init__(self, *, port: int = 0, start_timeout: float = START_TIMEOUT) -> None:
        self.port = port
        self.start_timeout = start_timeout
        self.peer_id: str = ""
        self.multiaddrs: list[str] = []
        self.versions: dict[str, str] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=300)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._finalizer: weakref.finalize | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> HeliaPeer:
        if self._proc is not None:
            raise RuntimeError("HeliaPeer already started")
        node = helia_node()
        proc = subprocess.Popen(
            [node, str(PEER_MJS), "--port", str(self.port)],
            cwd=HELIA_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _kill, proc)
        assert proc.stdout is not None and proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_stdout, args=(proc.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(proc.stderr,), daemon=True),
        ]
        for t in self._threads:
            t.start()
        try:
            ready = self._next_answer(self.start_timeout, "start")
            self.peer_id = str(ready["peerId"])
            self.multiaddrs = [str(a) for a in ready["multiaddrs"]]
            self.versions = dict(ready.get("versions", {}))
            if not self.multiaddrs:
                raise HeliaError(f"peer.mjs listens on no address: {ready}")
        except BaseException:
            self.kill()
            raise
        return self

    def __enter__(self) -> HeliaPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def multiaddr(self) -> str:
        """The first listen address, with /p2p/<peer id>."""
        return self.multiaddrs[0]

    def stop(self) -> None:
        """Ask peer.mjs to stop, wait a bounded time, then kill it regardless."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(HeliaError, OSError, ValueError):
                self.request({"stop": True}, timeout=STOP_TIMEOUT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT)
        self.kill()

    def kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        _kill(proc)
        for t in self._threads:
            t.join(timeout=STOP_TIMEOUT)
        if self._finalizer is not None:
            self._finalizer.detach()

    def stderr_tail(self, lines: int = 40) -> str:
        """The last lines peer.mjs wrote on stderr (its log)."""
        return "\n".join(list(self._stderr)[-lines:])

    # -- plumbing --------------------------------------------------------------------------

    def _read_stdout(self, pipe: IO[str]) -> None:
        try:
            for line in pipe:
                if line.strip():
                    self._lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._lines.put(None)

    def _read_stderr(self, pipe: IO[str]) -> None:
        try:
            for line in pipe:
                self._stderr.append(line.rstrip("\n"))
        except (OSError, ValueError):
            pass

    def _next_answer(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            # the answer may still come later and be taken for the next one's: give up
            self.kill()
            raise HeliaError(
                f"peer.mjs gave no answer to {what} within {timeout:.0f} s (killed); "
                f"its stderr:\n{self.stderr_tail()}"
            ) from None
        if line is None:
            self._lines.put(None)  # stay at EOF for later calls
            code = self._proc.poll() if self._proc is not None else None
            raise HeliaError(
                f"peer.mjs exited (code {code}) before answering {what}; "
                f"its stderr:\n{self.stderr_tail()}"
            )
        try:
            answer = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HeliaError(f"peer.mjs printed non-JSON: {line[:500]!r}") from exc
        if not isinstance(answer, dict):
            raise HeliaError(f"peer.mjs printed {answer!r}, not an object")
        return answer

    def request(self, cmd: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one command, return its answer; ``{"error": ...}`` raises HeliaError."""
        if timeout is None:
            ms = cmd.get("timeout_ms")
            timeout = ms / 1000 + SLACK if isinstance(ms, int) else COMMAND_TIMEOUT
        what = json.dumps(cmd)[:200]
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                raise HeliaError("HeliaPeer is not started")
            if proc.poll() is not None:
                raise HeliaError(
                    f"peer.mjs has exited (code {proc.returncode}); "
                    f"its stderr:\n{self.stderr_tail()}"
                )
            try:
                proc.stdin.write(json.dumps(cmd) + "\n")
                proc.stdin.flush()
            except (OSError, ValueError) as exc:
                raise HeliaError(f"cannot write to peer.mjs: {exc}") from exc
            answer = self._next_answer(timeout, what)
        if "error" in answer:
            raise HeliaError(f"peer.mjs: {what}: {answer['error']}")
        return answer

    # -- commands --------------------------------------------------------------------------

    def add(
        self,
        size: int | None = None,
        seed: str | None = None,
        text: str | None = None,
        profile: str = "kubo-v0",
    ) -> str:
        """Import a file into Helia's blockstore like Kubo's ``ipfs add`` (``profile`` as in
        tests/helia_ref); return its root CID. Content: ``text`` (UTF-8), or
        ``deterministic_bytes(size, seed)`` generated on the JS side."""
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
        if text is not None:
            if seed is not None:
                raise ValueError("give either text or seed, not both")
            if size is not None and size != len(text.encode("utf-8")):
                raise ValueError(f"size {size} != UTF-8 length of text")
            spec: dict[str, Any] = {"text": text}
        else:
            if size is None or seed is None:
                raise ValueError("give text, or size and seed")
            spec = {"size": size, "seed": seed}
        # 10 minutes: a big file is generated, chunked and hashed in JS
        return str(self.request({"add": spec, "profile": profile}, timeout=600)["cid"])

    def connect(self, maddr: str, timeout_ms: int = 10_000) -> dict[str, Any]:
        """Dial a peer (a multiaddr ending in /p2p/<id>). Returns the connection:
        ``{"ok", "peer", "remoteAddr", "direction", "muxer", "encryption", "status"}``."""
        return self.request({"connect": str(maddr), "timeout_ms": timeout_ms})

    def cat(self, cid: str, timeout_ms: int = 30_000) -> tuple[str, int]:
        """Read a whole file through @helia/unixfs (missing blocks over Bitswap from
        connected peers); return ``(sha256 hex, size)``."""
        answer = self.request({"cat": str(cid), "timeout_ms": timeout_ms})
        return str(answer["sha256"]), int(answer["size"])

    def peers(self) -> list[str]:
        """Peer ids with an open connection."""
        return [str(p) for p in self.request({"peers": True})["peers"]]

    def has(self, cid: str) -> bool:
        """Whether the block is in Helia's local blockstore (no network)."""
        return bool(self.request({"has": str(cid)})["has"])

    def ping(self, target: str, timeout_ms: int = 10_000) -> float:
        """/ipfs/ping/1.0.0 to a peer id (open connection) or a multiaddr; RTT in ms."""
        return float(self.request({"ping": str(target), "timeout_ms": timeout_ms})["rtt_ms"])

    def peer_info(self, peer_id: str) -> dict[str, Any]:
        """What identify told Helia about a peer, and the open connections to it:
        ``{"protocols", "agentVersion", "protocolVersion", "addrs", "connections"}``."""
        return self.request({"peer_info": str(peer_id)})

    def wait_for_peer(self, peer_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll ``peer_info`` until identify has filled in the peer's protocols and agent.

        Helia can store the protocols before the agent version (an identify push from
        the dialling side lands first), so both are waited for."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.peer_info(peer_id)
            if info["protocols"] and info["connections"] and info["agentVersion"]:
                return info
            if time.monotonic() > deadline:
                raise HeliaError(f"no identify from {peer_id} within {timeout} s: {info}")
            time.sleep(0.05)
