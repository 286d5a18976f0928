"""chorus's importer against an independent one: CIDs made by Helia's
`ipfs-unixfs-importer` (committed in tests/vectors/unixfs.json, kubo-v0 also checked
against Kubo itself when they were made), and live against Helia for fresh cases."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from node.adder import add_paths
from protocol.cid import cid_to_text
from protocol.importer import KUBO_DEFAULT, KUBO_V1_RAW, import_file
from tests.vectors.content import deterministic_bytes, deterministic_chunks

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "unixfs.json").read_text())
PROFILES = {"kubo-v0": KUBO_DEFAULT, "v1-raw": KUBO_V1_RAW}


def _source(case: dict):
    if "text" in case:
        return [case["text"].encode("utf-8")]
    return deterministic_chunks(case["size"], case["seed"])


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("case", VECTORS["files"], ids=lambda case: case["name"])
def test_file_cids_equal_reference(case, profile):
    blocks = {}
    entry = import_file(_source(case), PROFILES[profile], blocks.__setitem__)
    assert cid_to_text(entry.cid) == case["cids"][profile]
    assert len(blocks) == case["blocks"][profile]


def _materialise(root: Path, entries: list[dict]) -> None:
    for item in entries:
        path = root / item["path"]
        if item.get("dir"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if "text" in item:
            path.write_bytes(item["text"].encode("utf-8"))
        else:
            path.write_bytes(deterministic_bytes(item["size"], item["seed"]))


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("case", VECTORS["directories"], ids=lambda case: case["name"])
def test_directory_cids_equal_reference(case, profile, tmp_path):
    _materialise(tmp_path, case["entries"])
    top = case["entries"][0]["path"].split("/")[0]
    result = add_paths([tmp_path / top], None, PROFILES[profile], recursive=True)
    got = {item.name: cid_to_text(item.cid) for item in result.added}
    expected = case["cids"][profile]
    assert got == expected["paths"]
    assert cid_to_text(result.root.cid) == expected["root"]


@pytest.mark.helia
@pytest.mark.integration
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_fresh_random_files_equal_live_helia(profile):
    from tests.helia_ref import helia_import_file

    rng = random.Random()
    sizes = [rng.randrange(1, 3 * 262_144), rng.randrange(262_144 * 2, 262_144 * 5)]
    for size in sizes:
        seed = f"live-{rng.getrandbits(64):x}"
        expected = helia_import_file(size, seed=seed, profile=profile)
        got = import_file(deterministic_chunks(size, seed), PROFILES[profile])
        assert cid_to_text(got.cid) == expected, f"size {size} seed {seed}"


@pytest.mark.helia
@pytest.mark.integration
def test_fresh_random_tree_equals_live_helia(tmp_path):
    from tests.helia_ref import helia_import_tree

    rng = random.Random()
    entries = []
    for i in range(rng.randrange(3, 9)):
        depth = rng.randrange(0, 3)
        folder = "/".join(f"d{rng.randrange(3)}" for _ in range(depth))
        name = f"{folder}/f{i}.bin" if folder else f"f{i}.bin"
        entries.append({"path": f"tree/{name}", "size": rng.randrange(0, 300_000),
                        "seed": f"t{i}-{rng.getrandbits(32)}"})
    for profile, options in PROFILES.items():
        expected = helia_import_tree(entries, profile)
        root = tmp_path / profile
        _materialise(root, entries)
        result = add_paths([root / "tree"], None, options, recursive=True)
        assert {i.name: cid_to_text(i.cid) for i in result.added} == expected["paths"], entries
