"""Regenerate tests/vectors/unixfs.json: reference UnixFS CIDs from ipfs-unixfs-importer.

Usage (from the repository root):  .venv/bin/python tests/vectors/make_vectors.py

Runs tests/helia/setup.sh (installs Node 22 and ipfs-unixfs-importer from the npm registry
on first use), then tests/helia/import.mjs once per case and profile. Before writing it
checks that the JS side generates the same bytes as content.py, and that the well-known
Kubo CIDs come out; it writes nothing if either check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests` importable
    sys.path.insert(0, str(ROOT))

from tests.helia_ref import (  # noqa: E402
    PROFILES,
    helia_content_sha256,
    helia_import_file_result,
    helia_import_tree,
    helia_node,
    helia_versions,
)
from tests.vectors.content import deterministic_chunks  # noqa: E402

OUT = Path(__file__).resolve().parent / "unixfs.json"
CHUNK = 262144

CONTENT = (
    'deterministic_bytes(size, seed) = sha256(f"{seed}:{k}".encode("utf-8")).digest() '
    "for k = 0, 1, 2, ... concatenated and truncated to size bytes (tests/vectors/content.py)"
)
PROFILE_DOC = {
    "kubo-v0": "ipfs add (Kubo defaults): CIDv0, dag-pb 'file' leaves, 262144-byte fixed "
    "chunks, balanced DAG with <= 174 links per node, single-block file = its leaf",
    "v1-raw": "ipfs add --cid-version=1 --raw-leaves: CIDv1 (base32), raw leaves, "
    "dag-pb internal nodes and directories, same chunker and layout",
}

# name, size, seed-or-None, text-or-None
FILES: list[tuple[str, int, str | None, str | None]] = [
    ("empty", 0, "empty", None),
    ("one-byte", 1, "one-byte", None),
    ("chunk-minus-1", CHUNK - 1, "chunk-minus-1", None),
    ("one-chunk", CHUNK, "one-chunk", None),
    ("chunk-plus-1", CHUNK + 1, "chunk-plus-1", None),
    ("174-chunks", 174 * CHUNK, "174-chunks", None),
    ("174-chunks-plus-1", 174 * CHUNK + 1, "174-chunks-plus-1", None),
    ("10-mib", 10 * 1024 * 1024, "10-mib", None),
    ("hello-world", 12, None, "hello world\n"),
]

DIRECTORIES: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "album",
        [
            {"path": "album/01-intro.txt", "text": "Intro\nWelcome to the co-op.\n"},
            {"path": "album/02-track.bin", "size": 600000, "seed": "album/02-track.bin"},
            {"path": "album/cover/front.bin", "size": 1000, "seed": "album/cover/front.bin"},
            {"path": "album/cover/notes/liner.txt", "text": "Liner notes.\nRecorded live.\n"},
            {"path": "album/empty", "dir": True},
            {"path": "album/b.txt", "text": "b\n"},
            {"path": "album/A.txt", "text": "A\n"},
            # UTF-8 name: sorts by bytes after every ASCII name (0xC3 > 'z')
            {"path": "album/\u00e9t\u00e9.txt", "text": "\u00e9t\u00e9\n"},
        ],
    ),
    ("empty-dir", [{"path": "empty-dir", "dir": True}]),
]

# Well-known CIDs printed by Kubo itself; Kubo is the authority.
KUBO_FACTS: list[tuple[str, Callable[[dict[str, Any]], str], str]] = [
    (
        "hello-world kubo-v0",
        lambda v: _file(v, "hello-world")["kubo-v0"],
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
    ),
    (
        "empty file kubo-v0",
        lambda v: _file(v, "empty")["kubo-v0"],
        "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
    ),
    (
        "empty file v1-raw",
        lambda v: _file(v, "empty")["v1-raw"],
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    ),
    (
        "empty dir kubo-v0",
        lambda v: _dir(v, "empty-dir")["kubo-v0"]["root"],
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn",
    ),
    (
        "album/empty kubo-v0",
        lambda v: _dir(v, "album")["kubo-v0"]["paths"]["album/empty"],
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn",
    ),
]


def _file(vectors: dict[str, Any], name: str) -> dict[str, str]:
    return next(f for f in vectors["files"] if f["name"] == name)["cids"]


def _dir(vectors: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in vectors["directories"] if d["name"] == name)["cids"]


def _python_sha256(size: int, seed: str) -> str:
    h = hashlib.sha256()
    for piece in deterministic_chunks(size, seed):
        h.update(piece)
    return h.hexdigest()


def check_content(pool: ThreadPoolExecutor) -> None:
    """The JS generator must give exactly content.py's bytes, for every sized case."""
    specs = {(size, seed) for _, size, seed, _ in FILES if seed is not None}
    specs |= {(e["size"], e["seed"]) for _, ents in DIRECTORIES for e in ents if "seed" in e}
    specs.add((3 * (1 << 20) + 7, "piece-boundaries"))
    js = {spec: pool.submit(helia_content_sha256, *spec) for spec in sorted(specs)}
    for (size, seed), fut in js.items():
        want = _python_sha256(size, seed)
        if fut.result() != want:
            raise SystemExit(
                f"content mismatch for size={size} seed={seed!r}: "
                f"JS {fut.result()} != Python {want}"
            )


def build(pool: ThreadPoolExecutor) -> dict[str, Any]:
    versions = helia_versions()
    file_jobs = {
        (name, profile): pool.submit(
            helia_import_file_result, size, seed=seed, text=text, profile=profile
        )
        for name, size, seed, text in FILES
        for profile in PROFILES
    }
    dir_jobs = {
        (name, profile): pool.submit(helia_import_tree, entries, profile)
        for name, entries in DIRECTORIES
        for profile in PROFILES
    }
    files = []
    for name, size, seed, text in FILES:
        results = {p: file_jobs[name, p].result() for p in PROFILES}
        for p, r in results.items():
            if r["size"] != size:
                raise SystemExit(f"{name} {p}: import.mjs saw {r['size']} bytes, want {size}")
        entry: dict[str, Any] = {"name": name, "size": size}
        entry.update({"seed": seed} if seed is not None else {"text": text})
        entry["cids"] = {p: results[p]["cid"] for p in PROFILES}
        entry["blocks"] = {p: results[p]["blocks"] for p in PROFILES}
        files.append(entry)
    directories = []
    for name, entries in DIRECTORIES:
        results = {p: dir_jobs[name, p].result() for p in PROFILES}
        directories.append(
            {
                "name": name,
                "entries": entries,
                "cids": {
                    p: {"root": results[p]["root"], "paths": results[p]["paths"]} for p in PROFILES
                },
                "blocks": {p: results[p]["blocks"] for p in PROFILES},
            }
        )
    return {
        "generator": f"ipfs-unixfs-importer {versions['importer']} on node {versions['node']}",
        "content": CONTENT,
        "profiles": PROFILE_DOC,
        "files": files,
        "directories": directories,
    }


def check_kubo_facts(vectors: dict[str, Any]) -> list[str]:
    return [
        f"{what}: got {get(vectors)}, Kubo says {want}"
        for what, get, want in KUBO_FACTS
        if get(vectors) != want
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write ({OUT})")
    parser.add_argument("--jobs", type=int, default=2, help="import.mjs processes at once")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    node = helia_node()
    print(f"node: {node} ({time.monotonic() - t0:.1f}s for setup.sh)", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        check_content(pool)
        vectors = build(pool)
    problems = check_kubo_facts(vectors)
    if problems:
        print("import.mjs disagrees with Kubo:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    text = json.dumps(vectors, indent=2, ensure_ascii=False) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(
        f"wrote {args.out} ({vectors['generator']}) in {time.monotonic() - t0:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
