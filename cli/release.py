"""`chorus release publish|ls|show|verify` and `chorus play`: artists publish, listeners play.

The rules live in node/release.py (what a release is, how a track's DAG is checked)
and node/play.py (what a play costs, whether it counts, what it acknowledges); this
file moves bytes between them and the node. As everywhere in the CLI, a running
daemon owns the repo, so the commands go through it when it runs — content through
its Kubo RPC (`add`, `block/get`, `dag/export`) and gateway (`/ipfs/CID`), entries
through the chorus API (`/api/chorus/v1/ledger`, signed there with the named key
and announced to the co-op) — and open the repo themselves when it does not
(`_Daemon` and `_Offline` below: the same six operations, two ways).

Figures (prices, balances, ownership) are computed here from the node's whole log
with `ledger.tally.tally`, the function every node and `chorus ledger tally` run,
so what a listener is shown before a play is what the co-op will charge.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote as url_quote

from multiformats import CID

from ledger.entry import SignedEntry, decode_entry_checked_elsewhere
from ledger.genesis import Genesis
from ledger.jsonview import body_to_json, id_text
from ledger.tally import Tally, tally
from node import play as plays
from node.client import DaemonClient, DaemonError, find_daemon
from node.keystore import Keystore
from node.release import (
    Release,
    ReleaseError,
    TrackCheck,
    UnknownRelease,
    audio_files,
    car_blocks,
    check_file_root,
    check_payees,
    check_track,
    find_release,
    parse_payee,
    read_track,
    release_body,
    releases_in,
    releases_with_track,
    store_blocks,
)
from protocol.cid import cid_to_text, parse_cid
from protocol.reader import read_file

from .console import emit_json, fail

__all__ = ["register"]

_PAGE = 1000  # entries per GET /ledger/log (node/ledger_views.py MAX_LOG)
_CHUNK = 1 << 16
_PLAY_LABELS = len("ownership")  # the widest label `play` prints


def register(commands: argparse._SubParsersAction) -> None:
    release = commands.add_parser(
        "release",
        help="artists' releases: publish a folder of tracks, list, show, verify",
        description="Releases: tracks (by CID) and payee splits, signed by the artist's key.",
    )
    verbs = release.add_subparsers(dest="release_command", metavar="SUBCOMMAND", required=True)

    publish = verbs.add_parser(
        "publish",
        help="import a folder's audio files, pin them and sign the release",
        description=(
            "Import every audio file of DIR (.wav .flac .mp3 .ogg .opus .m4a, in name "
            "order) as `chorus add` does, pin it, read its duration and title tag, and "
            "sign a release entry with the artist's key. Prints the release id."
        ),
        epilog="example:\n  chorus release publish ./album --title 'First light' --as alice "
        "--payee alice:7000 --payee bob:3000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    publish.add_argument("directory", type=Path, metavar="DIR")
    publish.add_argument("--title", required=True, help="the release's title")
    publish.add_argument(
        "--as", dest="artist", required=True, metavar="KEYNAME",
        help="the artist's key (`chorus key list`) that signs the release",
    )
    publish.add_argument(
        "--payee", action="append", default=[], metavar="KEY:BPS",
        help="who is paid: a key name or 64-hex public key and basis points; repeat, "
        "summing to 10000 (default: the artist, 10000)",
    )
    publish.add_argument("-q", "--quiet", action="store_true", help="print only the release id")
    publish.add_argument("--json", action="store_true")
    publish.set_defaults(run=run_publish)

    ls = verbs.add_parser("ls", help="every release in this node's ledger")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=run_ls)

    show = verbs.add_parser("show", help="one release: tracks, payees, plays and earnings")
    show.add_argument("release", metavar="ID", help="the release id (its entry CID)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=run_show)

    verify = verbs.add_parser(
        "verify",
        help="check every track's blocks hash to its CID and are all there (fetching "
        "missing ones through the daemon)",
    )
    verify.add_argument("release", metavar="ID")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=run_verify)

    play = commands.add_parser(
        "play",
        help="stream a track, pay for the play (stream to own) and acknowledge its hosts",
        description=(
            "Stream a track through the node, show its price and your progress toward "
            "owning it, record the play (signed by your listener key) when enough was "
            "played to count, and sign bandwidth receipts for the hosts that served it."
        ),
        epilog="example:\n  chorus play QmTrack... --as me\n"
        "  chorus play QmTrack... --as me --seconds 50 -o - | aplay",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    play.add_argument("cid", metavar="CID", help="the track's CID")
    play.add_argument("--release", default=None, metavar="ID",
                      help="the release the track is played from (default: the first "
                      "published that lists it)")
    play.add_argument("--as", dest="listener", required=True, metavar="KEYNAME",
                      help="the listener key (wallet) that pays and signs")
    play.add_argument("--seconds", type=_milliseconds, default=None, metavar="N",
                      help="play only the first N seconds")
    play.add_argument("-o", "--output", default=None, metavar="FILE",
                      help="write the audio here (- = stdout) as it streams")
    play.add_argument("--json", action="store_true")
    play.set_defaults(run=run_play)


def _milliseconds(text: str) -> int:
    """``--seconds`` as integer milliseconds (decimal text, no float rounding)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"seconds must be more than 0, not {text!r}")
    return int(value * 1000)


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- the node, two ways ---------------------------------------------------------------------


class _Daemon:
    """The running daemon: Kubo RPC for content, chorus API for the ledger."""

    online = True

    def __init__(self, client: DaemonClient) -> None:
        from .ledger import _LedgerApi  # the chorus API client `chorus ledger` uses

        self.client = client
        self.api = _LedgerApi(client)

    def ledger(self) -> tuple[list[SignedEntry], dict[bytes, int]]:
        """Every entry of the node's log and the freeze points of its feeds."""
        frozen: dict[bytes, int] = {}
        after = None
        while True:
            page = self.api.get("/ledger/heads", {"after": after, "limit": 4096})
            for feed in page["feeds"]:
                if feed["frozen_after"] is not None:
                    frozen[bytes.fromhex(feed["author"])] = feed["frozen_after"]
            if not page["more"]:
                break
            after = page["feeds"][-1]["author"]
        entries: list[SignedEntry] = []
        while True:
            page = self.api.get("/ledger/log", {"start": len(entries), "limit": _PAGE})
            for item in page["entries"]:
                # Our own node's log: it verified every entry when it stored it.
                entries.append(decode_entry_checked_elsewhere(base64.b64decode(item["data"])))
            if not page["entries"] or len(entries) >= page["size"]:
                return entries, frozen

    def write(self, key_name: str, kind: str, body: dict[str, Any]) -> SignedEntry:
        request = {"key": key_name, "kind": kind, "body": body_to_json(body)}
        written = self.api.post("/ledger/entries", value=request)
        stored = self.api.get("/ledger/entries/" + url_quote(written["id"], safe=""))
        return decode_entry_checked_elsewhere(base64.b64decode(stored["data"]))

    def add(self, files: list[Path]) -> dict[str, CID]:
        params = {"cid-version": 0, "pin": "true"}
        lines = self.client.upload("add", params, files, hidden=False)
        return {line["Name"]: parse_cid(line["Hash"]) for line in lines}

    def get_block(self, cid: CID) -> bytes:
        return b"".join(self.client.stream("block/get", {"arg": cid_to_text(cid)}))

    def track_blocks(self, cid: CID) -> Iterator[tuple[CID, bytes]]:
        """The track's DAG as the daemon exports it (fetching what it lacks)."""
        return car_blocks(self.client.stream("dag/export", {"arg": cid_to_text(cid)}))

    def counters(self) -> dict[str, int]:
        """Peer id -> verified Bitswap bytes received from it since the daemon started."""
        return {
            peer["peer_id"]: peer["exchange"]["bytes_received"]
            for peer in self.api.get("/peers")["peers"]
        }

    def stream(self, cid: CID) -> Iterator[bytes]:
        """The file's bytes through the daemon's gateway (fetched from the swarm as
        needed). Stopping early closes the connection, and the daemon stops fetching."""
        conn = http.client.HTTPConnection(self.client.host, self.client.port, timeout=120)
        try:
            conn.request("GET", f"/ipfs/{cid_to_text(cid)}")
            response = conn.getresponse()
            if response.status != 200:
                message = response.read(4096).decode("utf-8", "replace").strip()
                raise DaemonError(
                    f"the gateway answered {response.status} for {cid_to_text(cid)}: {message}"
                )
            while piece := response.read(_CHUNK):
                yield piece
        finally:
            conn.close()


class _Offline:
    """The repo itself (no daemon): local blocks only, entries written in place."""

    online = False

    def __init__(self, repo: Any, keystore: Keystore) -> None:
        self.repo = repo
        self.keystore = keystore

    def ledger(self) -> tuple[list[SignedEntry], dict[bytes, int]]:
        from node.coop import store_entries

        return store_entries(self.repo.ledger)

    def write(self, key_name: str, kind: str, body: dict[str, Any]) -> SignedEntry:
        from node import ledger_views as views

        key = self.keystore.get(key_name)
        store = self.repo.ledger
        views.check_writable(store, kind)
        views.check_feed_open(store, bytes(key.verify_key))
        return store.write(key, kind, body, _now_ms()).entry

    def add(self, files: list[Path]) -> dict[str, CID]:
        from node.adder import add_paths

        result = add_paths(files, self.repo.blockstore)
        return {item.name: item.cid for item in result.added}

    def get_block(self, cid: CID) -> bytes:
        return self.repo.blockstore.get(cid)

    def track_blocks(self, cid: CID) -> Iterator[tuple[CID, bytes]]:
        return store_blocks(cid, self.repo.blockstore.get)

    def counters(self) -> None:
        return None  # no exchange runs: nothing is fetched, nobody hosts

    def stream(self, cid: CID) -> Iterator[bytes]:
        from node.errors import BlockNotFound

        try:
            yield from read_file(cid, self.repo.blockstore.get)
        except BlockNotFound as exc:
            raise BlockNotFound(
                exc.cid, "not in the local store; start `chorus daemon` to fetch it"
            ) from None


@contextmanager
def _node(args: argparse.Namespace) -> Iterator[_Daemon | _Offline]:
    client = find_daemon(args.data_dir)
    if client is not None:
        yield _Daemon(client)
        return
    from node.repo import Repo

    with Repo.open(args.data_dir) as repo:
        yield _Offline(repo, Keystore(args.data_dir))


def _genesis(args: argparse.Namespace) -> Genesis | None:
    from node.coop import load_genesis

    return load_genesis(args.data_dir)


# -- printing ---------------------------------------------------------------------------------


def _when(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


def _uc(amount: int) -> str:
    return f"{amount:,} µc"


def _duration(ms: int) -> str:
    seconds, milli = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}:{seconds:02d}.{milli // 100}"


def _fields(rows: list[tuple[str, str]], out=None, width: int = 0) -> None:
    width = max(width, *(len(label) for label, _ in rows))
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}", file=out or sys.stdout)


def _key_label(keystore: Keystore | None, key: bytes) -> str:
    name = None
    if keystore is not None:
        try:
            name = keystore.find_by_public(key)
        except Exception:  # noqa: BLE001 - a name is a nicety; an unreadable key file is not ours
            name = None
    return key.hex() if name is None else f"{key.hex()} ({name})"


def _keystore(args: argparse.Namespace) -> Keystore | None:
    try:
        return Keystore(args.data_dir)
    except Exception:  # noqa: BLE001 - no repo: show keys as hex
        return None


# -- release publish ---------------------------------------------------------------------------


def run_publish(args: argparse.Namespace) -> int:
    keystore = Keystore(args.data_dir)
    artist = keystore.info(args.artist).public_key  # the signing key must be here
    specs = args.payee or [f"{artist.hex()}:10000"]
    payees = check_payees(
        [parse_payee(text, lambda name: keystore.info(name).public_key) for text in specs]
    )
    files, others = audio_files(args.directory)
    if not files:
        raise ReleaseError(
            f"{args.directory} holds no audio files (.wav .flac .mp3 .ogg .opus .m4a)"
        )
    if len(files) > 100:
        raise ReleaseError(f"{args.directory} holds {len(files)} audio files; a release has 1..100")
    names = [path.name for path in files]
    if len(set(names)) != len(names):
        raise ReleaseError("two audio files have the same name")
    tracks = [read_track(path) for path in files]  # NotAudio names the file it cannot read
    for path in others:
        print(f"skipping {path}: not an audio file", file=sys.stderr)
    with _node(args) as node:
        added = node.add(files)
        pairs = []
        for track in tracks:
            cid = added.get(track.path.name)
            if cid is None:
                raise ReleaseError(f"{track.path}: the node did not report adding it")
            check_file_root(cid, node.get_block, track.size, str(track.path))
            pairs.append((track, cid_to_text(cid)))
        body = release_body(args.title, pairs, payees)
        entry = node.write(args.artist, "release", body)
    release = Release(entry)
    if args.json:
        emit_json(release.to_json())
    elif args.quiet:
        print(release.id)
    else:
        for track, cid in pairs:
            print(f"added {cid} {track.path.name}  {track.title!r}  {_duration(track.duration_ms)}")
        split = ", ".join(f"{p['key'].hex()[:16]}… {p['bps']} bps" for p in payees)
        print(f"payees {split}")
        print(f"published release {release.id} {release.title!r}: "
              f"{len(pairs)} tracks, {_duration(release.duration_ms)}")
    return 0


# -- release ls / show / verify -------------------------------------------------------------------


def run_ls(args: argparse.Namespace) -> int:
    with _node(args) as node:
        entries, _ = node.ledger()
    found = releases_in(entries)
    if args.json:
        emit_json({"releases": [release.to_json() for release in found]})
        return 0
    if not found:
        print("no releases in this node's ledger (publish one with `chorus release publish`)")
        return 0
    keystore = _keystore(args)
    for release in found:
        artist = _key_label(keystore, release.artist)
        print(f"{release.id}  {release.title!r}  {len(release.tracks)} tracks  "
              f"{_duration(release.duration_ms)}  by {artist}")
    return 0


def _release_figures(genesis: Genesis | None, entries, frozen, release: Release):
    if genesis is None:
        return None
    figures = tally(genesis, entries, frozen=frozen)
    return {
        "paid_plays": figures.release_plays.get(release.id_bytes, 0),
        "earnings": figures.release_earnings.get(release.id_bytes, 0),
    }


def run_show(args: argparse.Namespace) -> int:
    genesis = _genesis(args)
    with _node(args) as node:
        entries, frozen = node.ledger()
    release = find_release(releases_in(entries), args.release)
    figures = _release_figures(genesis, entries, frozen, release)
    if args.json:
        emit_json({**release.to_json(), "figures": figures})
        return 0
    keystore = _keystore(args)
    rows = [
        ("release", release.id),
        ("title", release.title),
        ("artist", _key_label(keystore, release.artist)),
        ("published", f"{_when(release.time)} (seq {release.entry.seq} of the artist's feed)"),
        ("length", f"{len(release.tracks)} tracks, {_duration(release.duration_ms)}"),
    ]
    for payee in release.payees:
        rows.append(("payee", f"{payee['bps']:>5} bps  {_key_label(keystore, payee['key'])}"))
    if figures is not None:
        rows.append(("plays", f"{figures['paid_plays']} paid, "
                              f"{_uc(figures['earnings'])} to the payees"))
    _fields(rows)
    for number, track in enumerate(release.tracks, 1):
        print(f"{number:>3}. {track['cid']}  {_duration(track['duration_ms'])}  "
              f"{track['size']:>10,} B  {track['mime']:<10}  {track['title']}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    with _node(args) as node:
        entries, _ = node.ledger()
        release = find_release(releases_in(entries), args.release)
        checks: list[TrackCheck] = []
        for track in release.tracks:
            blocks = node.track_blocks(parse_cid(track["cid"]))
            checks.append(check_track(track, blocks))
    ok = all(check.ok for check in checks)
    if args.json:
        emit_json({"release": release.id, "ok": ok,
                   "tracks": [check.to_json() for check in checks]})
        return 0 if ok else 1
    for check in checks:
        if check.ok:
            print(f"ok    {check.cid}  {check.blocks} blocks, {check.size:,} bytes  "
                  f"{check.title}")
        else:
            why = check.problem or f"{len(check.missing)} blocks missing"
            if check.missing:
                why += f" (first: {check.missing[0]})"
            print(f"FAIL  {check.cid}  {why}  {check.title}")
    if not ok:
        bad = sum(1 for check in checks if not check.ok)
        return fail(f"{bad} of {len(checks)} tracks of release {release.id} do not verify")
    print(f"ok: all {len(checks)} tracks of release {release.id} are complete and hash "
          "to their CIDs")
    return 0


# -- play ------------------------------------------------------------------------------------


def _pick_release(releases: list[Release], cid: str, wanted: str | None) -> Release:
    if wanted is not None:
        release = find_release(releases, wanted)
        if release.track(cid) is None:
            raise UnknownRelease(f"release {release.id} ({release.title!r}) has no track {cid}")
        return release
    listing = releases_with_track(releases, cid)
    if not listing:
        raise UnknownRelease(
            f"no release in this node's ledger lists track {cid} (only published tracks "
            "can be played for the co-op; `chorus cat` reads any CID)"
        )
    return listing[0]


@contextmanager
def _sink(output: str | None) -> Iterator[BinaryIO | None]:
    if output is None:
        yield None
    elif output == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
    else:
        with open(output, "wb") as handle:
            yield handle


def run_play(args: argparse.Namespace) -> int:
    from node.coop import require_genesis

    if args.json and args.output == "-":
        raise ValueError("--json and -o - would mix the answer with the audio on stdout")
    cid = parse_cid(args.cid)
    track_cid = cid_to_text(cid)
    keystore = Keystore(args.data_dir)
    listener = keystore.info(args.listener).public_key
    genesis = require_genesis(args.data_dir)
    params = genesis.params
    report = sys.stderr if args.output == "-" else sys.stdout
    with _node(args) as node:
        entries, frozen = node.ledger()
        release = _pick_release(releases_in(entries), track_cid, args.release)
        track = release.track(track_cid)
        assert track is not None
        duration, size = track["duration_ms"], track["size"]
        before = tally(genesis, entries, frozen=frozen)
        ahead = plays.quote(before, listener, track_cid)
        limit = size if args.seconds is None else plays.bytes_for_ms(size, duration, args.seconds)
        if not args.json:
            _announce(release, track, ahead, report)
        start = node.counters()
        read = 0
        with _sink(args.output) as out:
            for piece in node.stream(cid):
                piece = piece[: limit - read]
                read += len(piece)
                if out is not None:
                    out.write(piece)
                if read >= limit:
                    break
        end = node.counters()
        received = {} if start is None or end is None else plays.host_bytes(start, end)
        played = plays.played_ms(duration, size, read)
        counted = plays.counts(params, duration, played)
        written: list[SignedEntry] = []
        play_entry = None
        if counted:
            body = plays.play_body(track_cid, release.id_bytes, played, plays.hosts_of(received))
            play_entry = node.write(args.listener, "play", body)
            written.append(play_entry)
        epoch = (play_entry.time if play_entry is not None else _now_ms()) // params.epoch_ms
        receipts = []
        for body in plays.receipt_bodies(entries, listener, epoch, received, track_cid):
            receipt = node.write(args.listener, "receipt", body)
            written.append(receipt)
            receipts.append(receipt)
    after: Tally = tally(genesis, entries + written, frozen=frozen)
    result = plays.outcome(before, after, listener, track_cid) if counted else "not_counted"
    now = plays.quote(after, listener, track_cid)
    answer = {
        "track": track_cid,
        "title": track["title"],
        "release": release.id,
        "listener": listener.hex(),
        "duration_ms": duration,
        "size": size,
        "bytes": read,
        "played_ms": played,
        "threshold_ms": plays.threshold_ms(params, duration),
        "counted": counted,
        "outcome": result,
        "play": None if play_entry is None else id_text(play_entry.id_bytes),
        "price": ahead.price if result == "paid" else 0,
        "before": ahead.to_json(),
        "after": now.to_json(),
        "hosts": [{"peer": peer, "bytes": received[peer]} for peer in sorted(received)],
        "epoch": epoch,
        "receipts": [
            {"id": id_text(r.id_bytes), "host": r.body["host"], "bytes": r.body["bytes"]}
            for r in receipts
        ],
        "online": node.online,
    }
    if args.json:
        emit_json(answer)
    else:
        _report_play(answer, ahead, now, report)
    return 0


def _announce(release: Release, track: dict[str, Any], ahead: plays.Quote, out) -> None:
    if ahead.owned:
        price = f"free: you own it ({ahead.paid} of {ahead.plays_to_own} paid plays)"
    else:
        price = (f"{_uc(ahead.price)}, paid play {ahead.number} of {ahead.plays_to_own} "
                 "toward owning it")
        if not ahead.affordable:
            price += " — the wallet cannot cover it: it would be recorded unpaid"
    _fields(
        [
            ("track", f"{track['title']} ({track['cid']}, {_duration(track['duration_ms'])})"),
            ("release", f"{release.title} ({release.id})"),
            ("price", price),
            ("wallet", _uc(ahead.balance)),
        ],
        out,
        _PLAY_LABELS,
    )


def _report_play(answer: dict[str, Any], ahead: plays.Quote, now: plays.Quote, out) -> None:
    hosts = answer["hosts"]
    if hosts:
        served = ", ".join(f"{h['peer']} {h['bytes']:,} B" for h in hosts)
    elif answer["online"]:
        served = "none: every block was already here"
    else:
        served = "none: read from the local store (no daemon)"
    rows = [
        ("played", f"{_duration(answer['played_ms'])} of {_duration(answer['duration_ms'])} "
                   f"({answer['bytes']:,} of {answer['size']:,} bytes)"),
        ("hosts", served),
    ]
    outcome = answer["outcome"]
    if not answer["counted"]:
        rows.append(("play", f"not recorded: a play counts from "
                             f"{_duration(answer['threshold_ms'])}"))
    elif outcome == "paid":
        rows.append(("play", f"recorded {answer['play']}: paid {_uc(ahead.price)}"))
    elif outcome == "unpaid":
        rows.append(("play", f"recorded {answer['play']}: UNPAID, the wallet held "
                             f"{_uc(ahead.balance)} of {_uc(ahead.price)}; it does not count "
                             "toward owning the track"))
    elif outcome == "free":
        rows.append(("play", f"recorded {answer['play']}: free, you own the track"))
    else:
        rows.append(("play", f"recorded {answer['play']}: not counted by the tally"))
    rows.append(("wallet", f"{_uc(now.balance)} (was {_uc(ahead.balance)})"))
    owned = "owned" if now.owned else "not owned yet"
    rows.append(("ownership", f"{now.paid} of {now.plays_to_own} paid plays ({owned})"))
    if answer["receipts"]:
        rows.append(("receipts", f"{len(answer['receipts'])} signed for epoch "
                                 f"{answer['epoch']}"))
    _fields(rows, out, _PLAY_LABELS)
