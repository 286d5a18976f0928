"""What the web app needs of the chorus API: releases, keys, plays it reports, ballots.

Rules of this file: it is the `releases`, `keys`, `plays` and `votes` tags of
node/chorus_api.py's operation table and follows that file's rules (an `Operation`
per endpoint with the JSON Schemas of its request and answers, every refusal the
chorus error object). Reads are public; the two writes need the node's API token
from its own machine (node/auth.py), which the web app (node/webapp/) sends.

    GET  /releases         every release in the node's ledger, with its tracks
    GET  /keys             the keystore's names and public keys (never a secret)
    POST /plays/progress   a listening session's progress; the node records the play
    POST /ballots          cast (or change) a member's ballot

Why the node records plays, not the page: the page only says how much of a track
its <audio> element has played. node/play_sessions.py keeps each session's progress
(monotonic, capped at the duration and at real time) and this endpoint signs the
``play`` entry with the listener key when it reaches the co-op's threshold — once
per session — then the cumulative bandwidth ``receipt`` entries for the peers the
node fetched the track's blocks from while the session ran, exactly as `chorus play`
does (node/play.py: the same bodies, the same rules).

Why a cached view of the log: the release list, the prices (a tally) and a
listener's earlier receipts are all functions of the whole log, which only grows;
so they are computed together in a worker thread and reused until the log's size
changes (as node/coop_api.py does for the tally).

Refusals:

    400 bad_request       a body or parameter that is not what the schema says
    404 not_found         no such key, release, track of that release, or proposal
    409 no_coop           the node is in no co-op (plays and ballots need its rules)
    409 session_conflict  a session id reused for another listener, release or track
    409 vote_not_open, vote_closed, not_eligible   a ballot that would not count
    409 conflict          the key's feed is frozen by an equivocation
    422 invalid           an option the proposal does not have; an entry the ledger refuses
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from nacl.signing import SigningKey
from starlette.requests import Request

from ledger.entry import EntryError, SignedEntry
from ledger.feed import rule_of
from ledger.jsonview import id_text
from ledger.tally import Tally, tally

from . import coop, play
from . import ledger_views as views
from .chorus_api import ApiError, Operation
from .json_schema import object_schema
from .keystore import KEY_NAME_RULE, InvalidKeyName, KeyNotFound, Keystore
from .play_sessions import PlaySession, SessionConflict
from .release import Release, releases_in

if TYPE_CHECKING:
    from ledger.genesis import Genesis

    from .daemon import Daemon
    from .ledger_store import LedgerStore

__all__ = ["LogView", "LogViews", "web_operations"]

#: Largest progress a report may carry, ms (far beyond any track; a JS safe integer).
MAX_PLAYED_MS = 10**12
#: Highest option index of a proposal (it has 2..16 options: ledger/econ_kinds.py).
MAX_OPTION = 15
SESSION_RULE = "[A-Za-z0-9_-]{8,64}"
_SESSION = re.compile(SESSION_RULE)
_KEY_NAME = re.compile(KEY_NAME_RULE)
_ENTRY_ID = re.compile(views.ENTRY_ID_PATTERN.strip("^$"))
_MAX_CID_TEXT = 128


# -- the log, as the web app sees it ------------------------------------------------------------


@dataclass(frozen=True)
class LogView:
    """What the endpoints read of the log at one size."""

    size: int
    #: release id (CID text) -> release, in ledger order; releases by a frozen feed
    #: after its freeze are left out (the tally does not count their plays)
    releases: dict[str, Release]
    #: the co-op's figures, or None when the node is in no co-op
    tally: Tally | None
    #: every receipt entry (the running totals new receipts continue)
    receipts: list[SignedEntry]


def log_view(store: LedgerStore, genesis: Genesis | None, size: int) -> LogView:
    entries, frozen = coop.store_entries(store)
    counted = [
        entry for entry in entries
        if entry.author not in frozen or entry.seq <= frozen[entry.author]
    ]
    return LogView(
        size=size,
        releases={release.id: release for release in releases_in(counted)},
        tally=None if genesis is None else tally(genesis, entries, frozen=frozen),
        receipts=[entry for entry in counted if entry.kind == "receipt"],
    )


class LogViews:
    """The last `LogView` and the log size it was made at (call from worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._view: LogView | None = None

    def get(self, store: LedgerStore, genesis: Genesis | None) -> LogView:
        size = store.log_size()
        with self._lock:
            if self._view is not None and self._view.size == size:
                return self._view
        # Entries appended after `size` was read may be in the view; it is then filed
        # under the smaller size and made again next time, never served stale.
        view = log_view(store, genesis, size)
        with self._lock:
            if self._view is None or size >= self._view.size:
                self._view = view
        return view


# -- request parsing ---------------------------------------------------------------------------


def _known_params(request: Request) -> None:
    if request.query_params:
        name = sorted(request.query_params)[0]
        raise ApiError(400, f"unknown query parameter {name!r} (this endpoint takes none)")


def _jsonobject_schema(raw: bytes, names: Sequence[str]) -> dict[str, Any]:
    """The body as a JSON object with exactly the members `names`; 400 otherwise."""
    wanted = ", ".join(f'"{name}"' for name in names)
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the body is not JSON ({exc}); send an object with {wanted}") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"the body must be a JSON object with {wanted}")
    missing = [name for name in names if name not in value]
    if missing:
        raise ApiError(400, f'the body has no "{missing[0]}" (it needs {wanted})')
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ApiError(400, f'unknown member "{unknown[0]}" in the body (it takes {wanted})')
    return value


def _key_name(value: Any) -> str:
    if not isinstance(value, str) or _KEY_NAME.fullmatch(value) is None:
        raise ApiError(400, str(InvalidKeyName(value if isinstance(value, str) else repr(value))))
    return value


def _entry_id(value: Any, what: str) -> str:
    if isinstance(value, str) and _ENTRY_ID.fullmatch(value) is not None:
        try:
            views.parse_entry_id(value)
            return value
        except views.LedgerRequestError:
            pass
    raise ApiError(400, f"{what} must be an entry id (CID text, bafkrei...), not {value!r}")


def _uint(value: Any, what: str, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int or not 0 <= value <= high:
        raise ApiError(400, f"{what} must be an integer in 0..{high}, not {value!r}")
    return value


def _text(value: Any, what: str, longest: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= longest:
        raise ApiError(400, f"{what} must be a string of 1..{longest} characters")
    return value


def _session_id(value: Any) -> str:
    if not isinstance(value, str) or _SESSION.fullmatch(value) is None:
        raise ApiError(
            400, f"session must match {SESSION_RULE} (the page makes one per track it starts)"
        )
    return value


# -- the operations ------------------------------------------------------------------------------


def _received(daemon: Daemon) -> dict[str, int]:
    """Peer -> verified bytes received from it since the daemon started."""
    return {str(peer): c.bytes_received for peer, c in daemon.exchange.counters.items()}


def web_operations(daemon: Daemon) -> list[Operation]:
    """The web app's endpoints for `daemon`. Building them touches no daemon attribute,
    so the OpenAPI document can be made without a running node."""
    cache = LogViews()

    async def current() -> LogView:
        return await trio.to_thread.run_sync(cache.get, daemon.repo.ledger, daemon.genesis)

    def genesis() -> Genesis:
        found = daemon.genesis
        if found is None:
            raise ApiError(
                409,
                "this node is in no co-op, so it has no rules to price plays or count votes "
                "by (join one with `chorus coop join GENESIS_FILE` and restart the daemon)",
                code="no_coop",
            )
        return found

    async def signing_key(name: str) -> SigningKey:
        def load() -> SigningKey:
            return Keystore(daemon.repo.path).get(name)

        try:
            return await trio.to_thread.run_sync(load)
        except KeyNotFound as exc:
            raise ApiError(404, str(exc)) from None

    async def feed_open(author: bytes) -> None:
        try:
            await trio.to_thread.run_sync(views.check_feed_open, daemon.repo.ledger, author)
        except views.FeedFrozen as exc:
            raise ApiError(409, str(exc)) from None

    async def write(key: SigningKey, kind: str, body: dict[str, Any]) -> SignedEntry:
        try:
            decision = await daemon.ledger.write(key, kind, body)
        except EntryError as exc:
            raise ApiError(422, f"{rule_of(exc)}: {exc}") from None
        return decision.entry

    # -- reads --

    async def list_releases(request: Request) -> dict[str, Any]:
        _known_params(request)
        view = await current()
        return {"releases": [release.to_json() for release in view.releases.values()]}

    async def list_keys(request: Request) -> dict[str, Any]:
        _known_params(request)

        def listing() -> list[dict[str, str]]:
            return [
                {"name": info.name, "public_key": info.public_hex}
                for info in Keystore(daemon.repo.path).list()
            ]

        return {"keys": await trio.to_thread.run_sync(listing)}

    # -- plays --

    async def progress(request: Request) -> dict[str, Any]:
        _known_params(request)
        body = _jsonobject_schema(
            await request.body(), ("as", "release", "track", "played_ms", "session")
        )
        name = _key_name(body["as"])
        release_id = _entry_id(body["release"], "release")
        track = _text(body["track"], "track", _MAX_CID_TEXT)
        reported = _uint(body["played_ms"], "played_ms", MAX_PLAYED_MS)
        session_id = _session_id(body["session"])
        rules = genesis()
        key = await signing_key(name)
        listener = bytes(key.verify_key)
        view = await current()
        release = view.releases.get(release_id)
        if release is None:
            raise ApiError(404, f"no release {release_id} in this node's ledger")
        listed = release.track(track)
        if listed is None:
            raise ApiError(404, f"release {release_id} ({release.title!r}) has no track {track}")
        sessions = daemon.play_sessions
        now = trio.current_time()
        try:
            session = sessions.open(
                session_id, listener, release_id, track, listed["duration_ms"], now,
                _received(daemon),
            )
        except SessionConflict as exc:
            raise ApiError(409, str(exc), code="session_conflict") from None
        sessions.report(session, reported, now)
        if session.recorded is None and play.counts(
            rules.params, session.duration_ms, session.played_ms
        ):
            async with sessions.lock:  # one recording at a time: receipts are running totals
                if session.recorded is None:
                    await record(session, key, release, rules)
            view = await current()
        assert view.tally is not None
        quote = play.quote(view.tally, listener, track)
        return {
            "session": session.id,
            "release": release_id,
            "track": track,
            "listener": listener.hex(),
            "played_ms": session.played_ms,
            "duration_ms": session.duration_ms,
            "threshold_ms": play.threshold_ms(rules.params, session.duration_ms),
            "recorded": session.recorded is not None,
            "entry": session.recorded,
            "outcome": session.outcome,
            "receipts": list(session.receipts),
            "price": quote.price,
            "n": quote.paid,
            "plays_to_own": quote.plays_to_own,
            "owned": quote.owned,
            "balance": quote.balance,
        }

    async def record(
        session: PlaySession, key: SigningKey, release: Release, rules: Genesis
    ) -> None:
        """Sign the session's play and the receipts for the hosts it fetched from."""
        listener = bytes(key.verify_key)
        await feed_open(listener)
        before = await current()
        received = play.host_bytes(session.counters, _received(daemon))
        body = play.play_body(
            session.track, release.id_bytes, session.played_ms, play.hosts_of(received)
        )
        entry = await write(key, "play", body)
        session.recorded = id_text(entry.id_bytes)  # from here on, never again
        epoch = entry.time // rules.params.epoch_ms
        for receipt in play.receipt_bodies(
            before.receipts, listener, epoch, received, session.track
        ):
            written = await write(key, "receipt", receipt)
            session.receipts.append(id_text(written.id_bytes))
        after = await current()
        assert before.tally is not None and after.tally is not None
        session.outcome = play.outcome(before.tally, after.tally, listener, session.track)

    # -- votes --

    async def cast(request: Request) -> dict[str, Any]:
        _known_params(request)
        body = _jsonobject_schema(await request.body(), ("as", "proposal", "option"))
        name = _key_name(body["as"])
        proposal_text = _entry_id(body["proposal"], "proposal")
        option = _uint(body["option"], "option", MAX_OPTION)
        genesis()
        key = await signing_key(name)
        author = bytes(key.verify_key)
        proposal_id = views.parse_entry_id(proposal_text)
        view = await current()
        assert view.tally is not None
        result = view.tally.votes.get(proposal_id)
        if result is None:
            raise ApiError(
                404, f"no proposal {proposal_text} that counts in this node's ledger"
            )
        if option >= len(result.options):
            listed = ", ".join(f"{i}: {text!r}" for i, text in enumerate(result.options))
            raise ApiError(422, f"proposal {result.title!r} has no option {option} ({listed})")
        now = daemon.ledger.now_ms()
        if now < result.opens:
            raise ApiError(409, f"the vote on {result.title!r} is not open yet",
                           code="vote_not_open")
        if now >= result.closes:
            raise ApiError(409, f"the vote on {result.title!r} is closed", code="vote_closed")
        member = view.tally.members.get(author)
        if member is None or member not in result.classes:
            raise ApiError(
                409,
                f"key {name!r} is not a member of a class that votes on {result.title!r} "
                f"({', '.join(result.classes)})",
                code="not_eligible",
            )
        await feed_open(author)
        entry = await write(key, "ballot", {"proposal": proposal_id, "option": option})
        after = await current()
        assert after.tally is not None
        counted = after.tally.votes[proposal_id].ballots.get(author) == option
        return {
            "id": id_text(entry.id_bytes),
            "proposal": proposal_text,
            "option": option,
            "author": author.hex(),
            "counted": counted,
        }

    return [
        Operation(
            "GET", "/releases", "getReleases", "Every release in the node's ledger, with tracks",
            list_releases, RELEASES, tag="releases", errors=[400],
            description=(
                "Releases in ledger order (time, author, seq). A track is played from the "
                "gateway at /ipfs/{cid}."
            ),
        ),
        Operation(
            "GET", "/keys", "getKeys", "The keys this node signs with: names and public keys",
            list_keys, KEYS, tag="keys", errors=[400],
            description=(
                '"self" is the node key. Only names and public keys: secrets never leave '
                "the keystore. A write names the key it signs with (`as`)."
            ),
        ),
        Operation(
            "POST", "/plays/progress", "postPlayProgress",
            "Report a listening session's progress; the node records the play",
            progress, PROGRESS, tag="plays",
            description=(
                "The page reports how much of the track its player has actually played "
                "(seeking ahead plays nothing). The node keeps the largest progress "
                "reported, capped at the track's duration and at 4x the time since the "
                "session's first report, and the first time it reaches min(count_after_ms, "
                "duration) signs the play with the `as` key, then cumulative bandwidth "
                "receipts for the peers the node fetched blocks from during the session. "
                "One play per session; later reports answer the same entry."
            ),
            request_body={
                "required": True,
                "content": {"application/json": {"schema": PROGRESS_REQUEST}},
            },
            errors=[400, 404, 409, 422],
        ),
        Operation(
            "POST", "/ballots", "postBallot", "Cast (or change) a member's ballot",
            cast, BALLOT, tag="votes",
            description=(
                "Signs a ballot with the `as` key. Refused (409) before the vote opens, "
                "after it closes, or when the key is not a member of a class that votes; "
                "the last ballot before closing counts."
            ),
            request_body={
                "required": True,
                "content": {"application/json": {"schema": BALLOT_REQUEST}},
            },
            errors=[400, 404, 409, 422],
        ),
    ]


# -- JSON Schemas ---------------------------------------------------------------------------------

_COUNT = {"type": "integer", "minimum": 0}
_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_ID = {"type": "string", "pattern": views.ENTRY_ID_PATTERN, "description": "entry id (CID)"}
_KEY_NAME_SCHEMA = {
    "type": "string",
    "pattern": f"^{KEY_NAME_RULE}$",
    "description": 'a key name of the node\'s keystore ("self": the node key)',
}


TRACK = object_schema(
    {
        "cid": {"type": "string", "description": "the track's CID: GET /ipfs/{cid}"},
        "title": {"type": "string"},
        "duration_ms": {"type": "integer", "minimum": 1},
        "size": {**_COUNT, "description": "bytes of the file"},
        "mime": {"type": "string"},
    }
)
RELEASES = object_schema(
    {
        "releases": {
            "type": "array",
            "items": object_schema(
                {
                    "id": _ID,
                    "artist": {**_HEX32, "description": "the key that signed the release"},
                    "seq": {"type": "integer", "minimum": 1},
                    "time": {**_COUNT, "description": "published, ms"},
                    "title": {"type": "string"},
                    "duration_ms": {**_COUNT, "description": "of all its tracks"},
                    "tracks": {"type": "array", "items": TRACK},
                    "payees": {
                        "type": "array",
                        "items": object_schema(
                            {"key": _HEX32, "bps": {"type": "integer", "minimum": 1,
                                                    "maximum": 10000}}
                        ),
                    },
                }
            ),
        }
    }
)
KEYS = object_schema(
    {
        "keys": {
            "type": "array",
            "items": object_schema({"name": {"type": "string"}, "public_key": _HEX32}),
        }
    }
)
PROGRESS_REQUEST = object_schema(
    {
        "as": {**_KEY_NAME_SCHEMA, "description": "the listener key that signs the play"},
        "release": _ID,
        "track": {"type": "string", "minLength": 1, "maxLength": _MAX_CID_TEXT,
                  "description": "a track CID of the release"},
        "played_ms": {"type": "integer", "minimum": 0, "maximum": MAX_PLAYED_MS,
                      "description": "media time actually played so far in this session"},
        "session": {"type": "string", "pattern": f"^{SESSION_RULE}$",
                    "description": "chosen by the page, new for every track it starts"},
    },
    "a listening session's progress",
)
PROGRESS = object_schema(
    {
        "session": {"type": "string"},
        "release": _ID,
        "track": {"type": "string"},
        "listener": _HEX32,
        "played_ms": {**_COUNT, "description": "progress the node credits the session"},
        "duration_ms": {"type": "integer", "minimum": 1},
        "threshold_ms": {**_COUNT, "description": "progress from which the play counts"},
        "recorded": {"type": "boolean", "description": "the session's play is in the ledger"},
        "entry": {"oneOf": [{"type": "null"}, _ID], "description": "the play entry"},
        "outcome": {"enum": [None, "paid", "unpaid", "free", "not_counted"],
                    "description": "what the tally made of the play"},
        "receipts": {"type": "array", "items": _ID,
                     "description": "bandwidth receipts signed with the play"},
        "price": {**_COUNT, "description": "µc of the listener's next counted play of the "
                  "track (0 once owned)"},
        "n": {**_COUNT, "description": "paid plays of the track so far"},
        "plays_to_own": {"type": "integer", "minimum": 1},
        "owned": {"type": "boolean"},
        "balance": {**_COUNT, "description": "µc in the listener's wallet"},
    },
    "the session as the node sees it, and where the listener stands",
)
BALLOT_REQUEST = object_schema(
    {
        "as": {**_KEY_NAME_SCHEMA, "description": "the member key that signs the ballot"},
        "proposal": _ID,
        "option": {"type": "integer", "minimum": 0, "maximum": MAX_OPTION,
                   "description": "the option's index"},
    },
    "a ballot to cast",
)
BALLOT = object_schema(
    {
        "id": _ID,
        "proposal": _ID,
        "option": _COUNT,
        "author": _HEX32,
        "counted": {"type": "boolean", "description": "the tally counts it now"},
    },
    "the ballot entry written",
)
