"""Releases: an artist's signed list of tracks and payees, from a folder of audio files.

`chorus release publish DIR` (cli/release.py) is a pipeline whose every step is here,
so the CLI only chooses between the daemon and the offline repo:

1. `check_payees`: who is paid and how much, before anything is read or stored. The
   split must be decided by the artist, never guessed: bps summing to anything but
   exactly 10000 is refused with the rule named (docs/economics.md "Entry kinds").
2. `audio_files` + `read_track`: the audio files of DIR in name order, each read with
   mutagen for its duration (ms) and title tag (the file stem when it has none). A
   file with an audio extension that mutagen cannot read is refused by name: a release
   whose durations are wrong would price every play of it wrongly (a play counts
   from min(45 s, duration)).
3. The files are imported exactly as `chorus add` does (CIDv0, Kubo's default
   profile), pinned, and each root is checked to be a UnixFS *file* of the size read
   from disk (`check_file_root`).
4. `release_body`: the body the ledger's RELEASE schema accepts, checked against it
   here so a refusal names the rule before anything is signed.

Reading back: `Release` is the decoded view of a release entry; `releases_in` lists
them from any iterable of entries (the daemon's log or the repo's), `find_release`
and `releases_with_track` look them up. `check_track` re-verifies a track's DAG from
whatever blocks a caller supplies (the local store, or a CAR the daemon streams
after fetching what was missing): every block hashed against its CID, every link
present, the root a UnixFS file of the size the release says.

Like the rest of node/, no event loop here: these are plain functions over paths,
bytes and entries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiformats import CID

from ledger.econ_kinds import RELEASE, TOTAL_BPS
from ledger.entry import SignedEntry
from ledger.jsonview import id_text
from ledger.schema import SchemaError
from protocol.car import CAR_END, NEED_DATA, CarBlock, CarDecoder
from protocol.cid import DAG_PB, cid_to_text, parse_cid, verify_block
from protocol.dag import links_of
from protocol.errors import ChorusError, InvalidCID
from protocol.reader import stat_node

from .errors import BlockNotFound

__all__ = [
    "AUDIO_TYPES",
    "MAX_TITLE",
    "NotAudio",
    "Release",
    "ReleaseError",
    "TrackCheck",
    "TrackFile",
    "UnknownRelease",
    "audio_files",
    "car_blocks",
    "check_file_root",
    "check_payees",
    "check_track",
    "find_release",
    "parse_payee",
    "parse_release_id",
    "read_track",
    "release_body",
    "releases_in",
    "releases_with_track",
    "store_blocks",
]

#: The audio files a release takes, by extension, and the MIME type its tracks get
#: (what a browser's <audio> element is served: node/gateway.py sniffs the same way).
AUDIO_TYPES: Mapping[str, str] = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
}
#: Longest release or track title the ledger accepts (ledger/econ_kinds.py).
MAX_TITLE = 256
_HEX_KEY = re.compile("[0-9a-fA-F]{64}")


class ReleaseError(ChorusError, ValueError):
    """A release that cannot be made as asked: payees, titles, files; the message
    names the input and the rule."""


class NotAudio(ReleaseError):
    """A file mutagen cannot read as audio (or with no duration); `path` names it."""

    def __init__(self, path: Path, why: str) -> None:
        self.path = path
        super().__init__(f"{path}: not an audio file chorus can read ({why})")


class UnknownRelease(ChorusError, LookupError):
    """No release entry with that id (or listing that track) in the ledger."""


# -- payees ------------------------------------------------------------------------------------


def parse_payee(text: str, resolve: Callable[[str], bytes]) -> tuple[bytes, int]:
    """``KEY:BPS`` as (32-byte key, bps); KEY is 64 hex digits or a name `resolve`
    turns into a public key (the keystore's). ReleaseError for anything else."""
    name, sep, bps_text = text.rpartition(":")
    if not sep or not name or not bps_text.isdigit():
        raise ReleaseError(
            f"--payee {text!r} must be KEY:BPS (a key name or 64 hex digits, then basis "
            "points 1..10000, e.g. alice:5000)"
        )
    bps = int(bps_text)
    if not 1 <= bps <= TOTAL_BPS:
        raise ReleaseError(f"--payee {text!r}: bps must be 1..{TOTAL_BPS}, not {bps}")
    key = bytes.fromhex(name) if _HEX_KEY.fullmatch(name) else resolve(name)
    return key, bps


def check_payees(payees: Sequence[tuple[bytes, int]]) -> list[dict[str, Any]]:
    """The ``payees`` of a release body, sorted by key; ReleaseError naming the rule
    when the keys repeat, there are more than 32, or the bps do not sum to 10000."""
    if not 1 <= len(payees) <= 32:
        raise ReleaseError(f"a release has 1..32 payees, not {len(payees)}")
    keys = [key for key, _ in payees]
    if len(set(keys)) != len(keys):
        twice = next(key for key in keys if keys.count(key) > 1)
        raise ReleaseError(f"payee {twice.hex()} is named twice: each payee once")
    total = sum(bps for _, bps in payees)
    if total != TOTAL_BPS:
        shares = " + ".join(str(bps) for _, bps in payees)
        raise ReleaseError(
            f"payee shares must sum to exactly {TOTAL_BPS} bps (100%); "
            f"these sum to {total} ({shares})"
        )
    return [{"key": key, "bps": bps} for key, bps in sorted(payees)]


# -- audio files -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrackFile:
    """One audio file as read from disk: what a release's track says of it."""

    path: Path
    title: str
    duration_ms: int
    mime: str
    size: int


def audio_files(directory: Path) -> tuple[list[Path], list[Path]]:
    """(audio files, other files) directly in `directory`, sorted by name bytes as
    `chorus add` sorts them; hidden files are neither. A file given instead of a
    directory is a one-track release."""
    if directory.is_file():
        return ([directory], []) if directory.suffix.lower() in AUDIO_TYPES else ([], [directory])
    if not directory.is_dir():
        raise FileNotFoundError(2, "no such directory", str(directory))
    audio: list[Path] = []
    other: list[Path] = []
    names = sorted(os.listdir(directory), key=lambda n: n.encode("utf-8", "surrogateescape"))
    for name in names:
        path = directory / name
        if name.startswith(".") or not path.is_file():
            continue
        (audio if path.suffix.lower() in AUDIO_TYPES else other).append(path)
    return audio, other


def _tag_title(audio: Any) -> str | None:
    """The title tag, whatever the tag format: Vorbis comments (FLAC, Ogg, Opus),
    EasyID3/EasyMP4 ("title"), or a plain ID3 TIT2 frame (WAV, AIFF)."""
    tags = getattr(audio, "tags", None)
    if not tags:
        return None
    for key in ("title", "TIT2"):
        try:
            value = tags.get(key)
        except (KeyError, ValueError, TypeError):
            value = None
        if value is None:
            continue
        items = getattr(value, "text", value)  # an ID3 frame holds .text
        if isinstance(items, str):
            items = [items]
        for item in items or ():
            text = str(item).strip()
            if text:
                return text
    return None


def read_track(path: Path) -> TrackFile:
    """Duration (ms), title (tag, else the file stem) and MIME type of an audio file.

    NotAudio names the file when mutagen cannot read it or finds no duration.
    """
    import mutagen  # only `release publish` needs it

    try:
        audio = mutagen.File(path, easy=True)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except Exception as exc:  # noqa: BLE001 - mutagen's parsers raise many types on bad input
        raise NotAudio(path, str(exc) or type(exc).__name__) from None
    if audio is None:
        raise NotAudio(path, "mutagen recognises no audio format in it")
    length = getattr(getattr(audio, "info", None), "length", None)
    if not isinstance(length, int | float) or not length > 0:
        raise NotAudio(path, "it has no duration")
    # Milliseconds, rounded half up from mutagen's seconds (a float from the stream
    # header: durations are metadata, not money).
    duration_ms = max(1, int(length * 1000 + 0.5))
    title = (_tag_title(audio) or path.stem).strip() or path.name
    if len(title) > MAX_TITLE:
        title = title[: MAX_TITLE - 1] + "…"
    return TrackFile(
        path=path,
        title=title,
        duration_ms=duration_ms,
        mime=AUDIO_TYPES[path.suffix.lower()],
        size=path.stat().st_size,
    )


def check_file_root(cid: CID, get_block: Callable[[CID], bytes], size: int, name: str) -> None:
    """ReleaseError unless `cid` is the root of a UnixFS file of `size` bytes."""
    try:
        info = stat_node(cid, get_block)
    except ChorusError as exc:
        raise ReleaseError(f"{name}: {cid_to_text(cid)} is not a UnixFS file: {exc}") from None
    if info.kind not in ("file", "raw"):
        raise ReleaseError(f"{name}: {cid_to_text(cid)} is a UnixFS {info.kind}, not a file")
    if info.size != size:
        raise ReleaseError(
            f"{name}: {cid_to_text(cid)} holds {info.size} bytes but the file has {size} "
            "(did it change while it was added?)"
        )


def release_body(
    title: str, tracks: Sequence[tuple[TrackFile, str]], payees: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ``release`` body for `tracks` (file, CID text) and checked `payees`,
    checked against the ledger's RELEASE schema (ReleaseError naming the rule)."""
    title = title.strip()
    if not 1 <= len(title) <= MAX_TITLE:
        raise ReleaseError(f"--title must be 1..{MAX_TITLE} characters")
    body = {
        "title": title,
        "tracks": [
            {
                "cid": cid,
                "title": track.title,
                "duration_ms": track.duration_ms,
                "size": track.size,
                "mime": track.mime,
            }
            for track, cid in tracks
        ],
        "payees": payees,
    }
    try:
        RELEASE.check(body)
    except SchemaError as exc:
        if "lists one CID twice" in str(exc):
            raise ReleaseError(
                "two files of the release have the same content (one CID twice); "
                "a release lists each track once"
            ) from None
        raise ReleaseError(f"the ledger would refuse this release: {exc}") from None
    return body


# -- releases in the ledger ----------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """A release entry, decoded: its id, artist (author key), time and body."""

    entry: SignedEntry = field(repr=False)

    @property
    def id_bytes(self) -> bytes:
        return self.entry.id_bytes

    @property
    def id(self) -> str:
        return id_text(self.entry.id_bytes)

    @property
    def artist(self) -> bytes:
        return self.entry.author

    @property
    def time(self) -> int:
        return self.entry.time

    @property
    def title(self) -> str:
        return self.entry.body["title"]

    @property
    def tracks(self) -> list[dict[str, Any]]:
        return self.entry.body["tracks"]

    @property
    def payees(self) -> list[dict[str, Any]]:
        return self.entry.body["payees"]

    @property
    def duration_ms(self) -> int:
        return sum(track["duration_ms"] for track in self.tracks)

    def track(self, cid: str) -> dict[str, Any] | None:
        return next((track for track in self.tracks if track["cid"] == cid), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "artist": self.artist.hex(),
            "seq": self.entry.seq,
            "time": self.time,
            "title": self.title,
            "duration_ms": self.duration_ms,
            "tracks": [dict(track) for track in self.tracks],
            "payees": [{"key": p["key"].hex(), "bps": p["bps"]} for p in self.payees],
        }


def _order(entry: SignedEntry) -> tuple[int, bytes, int, bytes]:
    return (entry.time, entry.author, entry.seq, entry.id_bytes)


def releases_in(entries: Iterable[SignedEntry]) -> list[Release]:
    """Every release entry (schema-valid) in `entries`, once each, in the ledger's
    total order (time, author, seq)."""
    seen: dict[bytes, SignedEntry] = {}
    for entry in entries:
        if entry.kind != "release" or entry.id_bytes in seen:
            continue
        try:
            RELEASE.check(entry.body)
        except SchemaError:
            continue  # the tally reports it (release_invalid); nothing to play
        seen[entry.id_bytes] = entry
    return [Release(entry) for entry in sorted(seen.values(), key=_order)]


def parse_release_id(text: str) -> bytes:
    """A release id (an entry id, CID text) as its 36 bytes; ReleaseError if it is not one."""
    try:
        cid = parse_cid(text.strip())
    except InvalidCID as exc:
        raise ReleaseError(
            f"{text!r} is not a release id (an entry CID, bafkrei...): {exc}"
        ) from None
    raw = bytes(cid)
    if cid.version != 1 or len(raw) != 36:
        raise ReleaseError(f"{text!r} is not a release id (an entry CID, bafkrei...)")
    return raw


def find_release(releases: Iterable[Release], text: str) -> Release:
    """The release whose id is `text`; UnknownRelease if the ledger has none."""
    wanted = parse_release_id(text)
    for release in releases:
        if release.id_bytes == wanted:
            return release
    raise UnknownRelease(f"no release {id_text(wanted)} in this node's ledger")


def releases_with_track(releases: Iterable[Release], cid: str) -> list[Release]:
    """The releases listing track `cid` (CID text as printed), in ledger order."""
    return [release for release in releases if release.track(cid) is not None]


# -- verifying a track's DAG ----------------------------------------------------------------------


@dataclass
class TrackCheck:
    """What `check_track` found for one track of a release."""

    cid: str
    title: str
    expected_size: int
    blocks: int = 0
    bytes: int = 0
    size: int | None = None
    missing: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.missing and self.size == self.expected_size

    def to_json(self) -> dict[str, Any]:
        return {
            "cid": self.cid,
            "title": self.title,
            "ok": self.ok,
            "blocks": self.blocks,
            "bytes": self.bytes,
            "size": self.size,
            "expected_size": self.expected_size,
            "missing": list(self.missing),
            "problem": self.problem,
        }


def check_track(track: Mapping[str, Any], blocks: Iterable[tuple[CID, bytes]]) -> TrackCheck:
    """Check a release track against `blocks` (any order, any source): each block
    hashes to its CID, every block the root reaches is there, and the root is a UnixFS
    file of the size the release states. Never raises for bad data: `problem` says."""
    root = parse_cid(track["cid"])
    check = TrackCheck(track["cid"], track["title"], track["size"])
    links: dict[bytes, list[CID]] = {}
    root_block: bytes | None = None
    try:
        for cid, data in blocks:
            verify_block(cid, data)
            key = bytes(cid.digest)
            if key in links:
                continue
            check.blocks += 1
            check.bytes += len(data)
            links[key] = links_of(cid, data) if cid.codec.code == DAG_PB else []
            if key == bytes(root.digest):
                root_block = data
    except ChorusError as exc:
        check.problem = str(exc)
        return check
    # Every block reachable from the root, by multihash (a v0 root's children may be
    # asked for as v1 by other tools: the bytes are what matter).
    stack, seen = [root], set()
    while stack:
        cid = stack.pop()
        key = bytes(cid.digest)
        if key in seen:
            continue
        seen.add(key)
        if key not in links:
            check.missing.append(cid_to_text(cid))
            continue
        stack.extend(links[key])
    if root_block is not None:
        block = root_block
        try:
            info = stat_node(root, lambda _cid: block)
            check.size = info.size
            if info.kind not in ("file", "raw"):
                check.problem = f"the root is a UnixFS {info.kind}, not a file"
        except ChorusError as exc:
            check.problem = f"the root is not a UnixFS file: {exc}"
    if check.problem is None and not check.missing and check.size != check.expected_size:
        check.problem = f"the file holds {check.size} bytes, the release says {check.expected_size}"
    return check


def store_blocks(root: CID, get_block: Callable[[CID], bytes]) -> Iterator[tuple[CID, bytes]]:
    """Every block under `root` that `get_block` has, depth first; missing ones are
    skipped (`check_track` names them), a corrupt one raises."""
    stack, seen = [root], set()
    while stack:
        cid = stack.pop()
        key = bytes(cid.digest)
        if key in seen:
            continue
        seen.add(key)
        try:
            data = get_block(cid)
        except BlockNotFound:
            continue
        yield cid, data
        if cid.codec.code == DAG_PB:
            stack.extend(reversed(links_of(cid, data)))


def car_blocks(pieces: Iterable[bytes]) -> Iterator[tuple[CID, bytes]]:
    """The blocks of a CARv1 arriving in `pieces` (e.g. the daemon's `dag/export`),
    unverified: `check_track` hashes each. CarError if the stream is malformed."""
    decoder = CarDecoder()
    source = iter(pieces)
    while True:
        event = decoder.next_event()
        if event is NEED_DATA:
            piece = next(source, None)
            if piece is None:
                decoder.receive_data(b"")  # the end of the stream
            elif piece:
                decoder.receive_data(piece)
        elif event is CAR_END:
            return
        elif isinstance(event, CarBlock):
            yield event.cid, event.data
