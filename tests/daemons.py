"""Real `chorus daemon` processes for integration tests.

Each daemon gets its own data directory, listens on 127.0.0.1 with OS-chosen ports,
and is torn down (SIGTERM, then SIGKILL) whatever the test does. The CLI is run
against it as a user would, through `chorus --data DIR ...`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 30.0


class DaemonProcess:
    def __init__(
        self,
        data: Path,
        *,
        bootstrap: list[str] = (),
        dht: bool = True,
        coop: str | None = None,
        http: str = "127.0.0.1:0",
        gateway: str | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.coop = coop
        self.extra = list(extra)
        self.http_bind = http
        self.gateway_bind = gateway
        self.gateway = ""
        self.data = data
        self.bootstrap = list(bootstrap)
        self.dht = dht
        self.proc: subprocess.Popen[str] | None = None
        self.peer_id = ""
        self.addr = ""
        self.api = ""
        self.log: list[str] = []
        if not (data / "config.json").exists():
            self.cli("init", check=True)

    def start(self) -> DaemonProcess:
        args = [sys.executable, "-m", "cli.main", "--data", str(self.data), "daemon",
                "--listen", "/ip4/127.0.0.1/tcp/0", "--http", self.http_bind]
        if self.gateway_bind:
            args += ["--gateway", self.gateway_bind]
        for peer in self.bootstrap:
            args += ["--bootstrap", peer]
        if not self.dht:
            args.append("--no-dht")
        if self.coop:
            args += ["--coop", self.coop]
        args += self.extra
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line.rstrip("\n"))
                if line.startswith("peer ID "):
                    self.peer_id = line.split()[2]
                elif line.startswith("swarm listening on "):
                    self.addr = line.split()[3]
                elif line.startswith("API server listening on "):
                    self.api = line.split()[4]
                elif line.startswith("public gateway listening on "):
                    self.gateway = line.split()[4]
                elif line.startswith("daemon is ready"):
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(READY_TIMEOUT):
            self.kill()
            raise RuntimeError(f"daemon in {self.data} did not start:\n" + "\n".join(self.log))
        return self

    def cli(self, *args: str, check: bool = True, timeout: float = 120,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", "--data", str(self.data), *args],
            cwd=ROOT, capture_output=True, timeout=timeout, input=stdin,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"chorus {' '.join(args)} exited {result.returncode}: {result.stderr.decode()}"
            )
        return result

    def cli_json(self, *args: str) -> object:
        return json.loads(self.cli(*args).stdout)

    def add(self, path: Path, *extra: str) -> str:
        return self.cli("add", "-Q", *extra, str(path)).stdout.decode().strip()

    def chorus_api(self, method: str, path: str, body: object = None) -> object:
        """A request to the chorus JSON API (/api/chorus/v1) with the node's token;
        urllib.error.HTTPError for an error status."""
        import urllib.request

        token = (self.data / "api_token").read_text().strip()
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.api}/api/chorus/v1{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def bitswap_stat(self) -> dict:
        from node.client import DaemonClient

        return DaemonClient(self.api).call("bitswap/stat")

    def connect(self, other: DaemonProcess) -> None:
        self.cli("swarm", "connect", other.addr)

    def stop(self, timeout: float = 15) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def init_in_coop(data: Path, genesis: Path) -> None:
    """`chorus init --coop GENESIS` (before DaemonProcess, which would init without)."""
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "--data", str(data), "init", "--coop", str(genesis)],
        cwd=ROOT, capture_output=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()


def start_all(nodes: list[DaemonProcess]) -> None:
    """Start the daemons side by side (each takes a few seconds to be ready)."""
    errors: list[BaseException] = []

    def start(node: DaemonProcess) -> None:
        try:
            node.start()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@contextmanager
def daemons(tmp: Path, count: int, *, chain: bool = False, dht: bool = True,
            coop: str | None = None, extra: Sequence[str] = ()) -> Iterator[list[DaemonProcess]]:
    """Start `count` daemons; with `chain`, each bootstraps from the one before."""
    started: list[DaemonProcess] = []
    try:
        for i in range(count):
            boot = [started[-1].addr] if chain and started else []
            node = DaemonProcess(tmp / f"node{i}", bootstrap=boot, dht=dht, coop=coop,
                                 extra=extra)
            started.append(node.start())
        yield started
    finally:
        for daemon in started:
            daemon.stop()


def wait_for(condition, timeout: float = 20.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
