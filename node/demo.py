"""The newcomer's first run: a throwaway node adds a track and reads it back.

Everything a later co-op demo needs starts here: a fresh repo, a synthesised
track, both of Kubo's import profiles, a seek read, a CAR round trip into a second
node's store and a full `repo verify` of each. Each step is checked, not assumed:
the demo fails (and says which step) if any byte comes back different.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from protocol.cid import cid_to_text
from protocol.errors import ChorusError
from protocol.importer import KUBO_DEFAULT, KUBO_V1_RAW
from protocol.reader import read_file

from .adder import add_paths
from .car import export_car, import_car
from .repo import Repo
from .sample_audio import synth_track

__all__ = ["DemoFailed", "DemoStep", "run_content_demo"]


class DemoFailed(ChorusError):
    """A demo step produced something other than what it must."""


@dataclass(frozen=True, slots=True)
class DemoStep:
    title: str
    detail: str


@dataclass(slots=True)
class DemoReport:
    steps: list[DemoStep] = field(default_factory=list)


def run_content_demo(
    workdir: Path, on_step: Callable[[DemoStep], None] | None = None
) -> DemoReport:
    """Run the content demo inside `workdir` (which the caller creates and removes)."""
    report = DemoReport()

    def step(title: str, detail: str) -> None:
        item = DemoStep(title, detail)
        report.steps.append(item)
        if on_step is not None:
            on_step(item)

    track = workdir / "first-light.wav"
    track.write_bytes(synth_track("First Light", seconds=12.0))
    digest = hashlib.sha256(track.read_bytes()).hexdigest()
    step("synthesised a track", f"{track.name}, {track.stat().st_size} bytes")

    with Repo.init(workdir / "node-a") as repo:
        step("initialised node A", str(repo.path))
        added = {}
        profiles = (("CIDv0 (Kubo default)", KUBO_DEFAULT), ("CIDv1 raw leaves", KUBO_V1_RAW))
        for label, options in profiles:
            result = add_paths([track], repo.blockstore, options)
            added[label] = result.root.cid
            step(f"added, {label}", f"added {cid_to_text(result.root.cid)} {track.name}")
        cid = added["CIDv0 (Kubo default)"]
        back = b"".join(read_file(cid, repo.blockstore.get))
        if hashlib.sha256(back).hexdigest() != digest:
            raise DemoFailed("the track read back from the store differs from the one added")
        step("read it back", f"{len(back)} bytes, sha2-256 identical")
        middle = len(back) // 2
        seek = b"".join(read_file(cid, repo.blockstore.get, middle, 4096))
        if seek != back[middle : middle + 4096]:
            raise DemoFailed("a seek read returned the wrong bytes")
        step("seeked to the middle", f"4096 bytes at offset {middle}")
        car = io.BytesIO()
        size = export_car(repo.blockstore, cid, car)
        step("exported a CAR", f"{size} bytes")
        report_a = repo.blockstore.verify()
        if report_a.corrupt:
            raise DemoFailed(f"node A has corrupt blocks: {report_a.corrupt}")
        step("verified node A", f"{report_a.checked} blocks rehashed, none corrupt")

    with Repo.init(workdir / "node-b") as other:
        car.seek(0)
        imported = import_car(other.blockstore, car)
        again = b"".join(read_file(cid, other.blockstore.get))
        if again != back:
            raise DemoFailed("node B's copy of the track differs")
        step("imported the CAR on node B", f"{imported.blocks} blocks, track identical, pinned")
    return report
