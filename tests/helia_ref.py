"""Reference UnixFS CIDs from an independent implementation, for live interop tests.

Runs ``tests/helia/import.mjs`` — the JS ``ipfs-unixfs-importer`` that Helia uses,
configured like Kubo's ``ipfs add`` — under the Node 22 that ``tests/helia/setup.sh``
installs (from the npm registry) on first use. Profiles:

* ``"kubo-v0"``: ``ipfs add`` defaults (CIDv0, dag-pb leaves, 256 KiB chunks,
  balanced DAG of <= 174 links);
* ``"v1-raw"``: ``ipfs add --cid-version=1 --raw-leaves``.

File content is given as ``text`` (its UTF-8 bytes) or as ``size`` + ``seed``, meaning
``tests.vectors.content.deterministic_bytes(size, seed)``, which the JS side generates
itself, so large files never cross a pipe.

CAR files: ``tests/helia/car.mjs`` reads and writes CARv1 with ``@ipld/car`` (the CAR
library Helia uses): ``helia_read_car`` and ``helia_write_car`` / ``helia_write_car_tree``.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

HELIA_DIR = Path(__file__).resolve().parent / "helia"
SETUP_SH = HELIA_DIR / "setup.sh"
IMPORT_MJS = HELIA_DIR / "import.mjs"
CAR_MJS = HELIA_DIR / "car.mjs"
PROFILES = ("kubo-v0", "v1-raw")

# setup.sh downloads Node 22 (~30 MB) and the JS dependencies on a fresh machine.
SETUP_TIMEOUT = 900
JOB_TIMEOUT = 600

_lock = threading.Lock()
_node: str | None = None


def helia_node() -> str:
    """Run ``tests/helia/setup.sh`` (once per process) and return the Node 22 binary path.

    Raises RuntimeError, carrying setup.sh's (npm's) stderr, if it cannot install.
    """
    global _node
    with _lock:
        if _node is not None:
            return _node
        try:
            proc = subprocess.run(
                ["bash", str(SETUP_SH)],
                capture_output=True,
                text=True,
                timeout=SETUP_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"tests/helia/setup.sh could not run: {exc}") from exc
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise RuntimeError(
                f"tests/helia/setup.sh failed (exit {proc.returncode}):\n"
                f"{proc.stderr.strip()}\n{proc.stdout.strip()}".rstrip()
            )
        node = lines[-1].strip()
        if not Path(node).is_file():
            raise RuntimeError(f"tests/helia/setup.sh printed {node!r}, which is not a file")
        _node = node
        return node


def run_job(
    job: dict[str, Any], timeout: float = JOB_TIMEOUT, script: Path = IMPORT_MJS
) -> dict[str, Any]:
    """Send one job to import.mjs (or another script of tests/helia) and return its
    decoded JSON answer."""
    node = helia_node()
    name = script.name
    try:
        proc = subprocess.run(
            [node, str(script)],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            cwd=HELIA_DIR,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{name} could not run: {exc}") from exc
    if proc.returncode != 0:
        raise RuntimeError(
            f"{name} failed (exit {proc.returncode}) on {json.dumps(job)[:200]}:\n"
            f"{proc.stderr.strip()}"
        )
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{name} printed non-JSON: {proc.stdout[:500]!r}") from exc


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")


def _file_spec(size: int, seed: str | None, text: str | None) -> dict[str, Any]:
    if text is not None:
        if seed is not None:
            raise ValueError("give either text or seed, not both")
        if size != len(text.encode("utf-8")):
            raise ValueError(f"size {size} != UTF-8 length {len(text.encode('utf-8'))} of text")
        return {"text": text}
    if seed is None:
        raise ValueError("give a seed (deterministic content) or a text")
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    return {"size": size, "seed": seed}


def helia_import_file_result(
    size: int, seed: str | None = None, text: str | None = None, profile: str = "kubo-v0"
) -> dict[str, Any]:
    """Like helia_import_file, with import.mjs's whole answer: ``{"cid", "size", "blocks"}``
    (``blocks`` = number of distinct blocks the import wrote)."""
    _check_profile(profile)
    return run_job({"profile": profile, "file": _file_spec(size, seed, text)})


def helia_import_file(
    size: int, seed: str | None = None, text: str | None = None, profile: str = "kubo-v0"
) -> str:
    """Root CID (as Kubo prints it) of one file: ``text``'s UTF-8 bytes (``size`` must be
    their length), or ``deterministic_bytes(size, seed)``."""
    return str(helia_import_file_result(size, seed, text, profile)["cid"])


def helia_import_tree(entries: list[dict[str, Any]], profile: str) -> dict[str, Any]:
    """Import a directory tree the way ``ipfs add -r DIR`` does (no wrapping directory).

    ``entries``: ``{"path": "album/a.bin", "size": N, "seed": "s"}``,
    ``{"path": "album/b.txt", "text": "..."}`` or ``{"path": "album/empty", "dir": True}``,
    all below one top-level directory. Returns ``{"root": cid, "root_path": "album",
    "paths": {path: cid for every file and directory, root included}, "blocks": n}``.
    """
    _check_profile(profile)
    return run_job({"profile": profile, "entries": entries})


def helia_versions() -> dict[str, str]:
    """``{"importer": "<ipfs-unixfs-importer version>", "node": "<node version>"}``."""
    return run_job({"version": True})


def helia_content_sha256(size: int, seed: str) -> str:
    """Hex sha256 of the JS side's deterministic_bytes(size, seed), to check it against
    tests/vectors/content.py."""
    return str(run_job({"sha256": {"size": size, "seed": seed}})["sha256"])


def helia_car_version() -> dict[str, str]:
    """``{"car": "<@ipld/car version>", "node": "<node version>"}``."""
    return run_job({"version": True}, script=CAR_MJS)


def helia_read_car(path: Path | str) -> dict[str, Any]:
    """Read a CAR with ``@ipld/car`` (CarBlockIterator), verifying every block.

    Returns ``{"version": 1, "roots": [cid, ...], "blocks": [{"cid", "size"}, ...]`` (in
    file order), ``"mismatches": [{"index", "cid", "reason"}, ...]}``; a block whose bytes
    do not hash (sha2-256) to its CID, or whose CID uses another hash, is a mismatch.
    Raises RuntimeError if @ipld/car cannot parse the file.
    """
    return run_job({"read": str(Path(path).resolve())}, script=CAR_MJS)


def helia_write_car(
    size: int,
    seed: str | None,
    profile: str,
    out_path: Path | str,
    *,
    text: str | None = None,
) -> dict[str, Any]:
    """Import one file with ipfs-unixfs-importer (as ``helia_import_file`` does) and write
    its DAG to ``out_path`` as a CARv1 with ``@ipld/car``'s CarWriter: root = the file's
    root, blocks in depth-first pre-order, each once (``ipfs dag export``'s order).
    Give ``seed=None`` and ``text`` (of UTF-8 length ``size``) for text content.

    Returns ``{"root": cid, "blocks": [cid, ...] in CAR order, "bytes": file size}``.
    """
    _check_profile(profile)
    spec = _file_spec(size, seed, text)
    out = str(Path(out_path).resolve())
    return run_job({"write": {"profile": profile, "file": spec, "out": out}}, script=CAR_MJS)


def helia_write_car_tree(
    entries: list[dict[str, Any]], profile: str, out_path: Path | str
) -> dict[str, Any]:
    """Like ``helia_write_car`` for a directory tree (``entries`` as for
    ``helia_import_tree``); the answer also has ``"root_path"`` and ``"paths"``."""
    _check_profile(profile)
    out = str(Path(out_path).resolve())
    return run_job({"write": {"profile": profile, "entries": entries, "out": out}}, script=CAR_MJS)
