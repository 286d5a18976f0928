"""Plays a web page reports: each listening session's progress, and when it is a play.

The web app (node/webapp/app.js) plays a track with an <audio> element on the
gateway and reports, about once a second, how much of it has actually been played:
the total length of the element's `played` ranges, so seeking ahead plays nothing.
The node — not the page — decides what that is worth. It keeps one `PlaySession`
per session id the page chose, and the endpoint (POST /plays/progress,
node/web_api.py) records the play entry, signed by the listener key, the first time
a session's progress reaches the co-op's threshold min(count_after_ms, duration)
(node/play.py `threshold_ms`, the tally's rule).

Rules of this file:

- A session is bound to one (listener key, release, track) by its first report; a
  report naming others under the same id is a `SessionConflict` (the page makes a
  new id for every track it starts).
- Progress only grows: a session's `played_ms` is the largest progress reported,
  capped at the track's duration and at what could have been played since the
  session's first report at MAX_PLAYBACK_RATE. A page that claims a whole track in
  its first report is credited nothing yet; it has to spend the time, as a listener
  would. (Browsers mute audio above 4x, so a faster rate is not listening.)
- One play per session: `recorded` is set once, by the caller that wrote the entry.
- At most `max_sessions` sessions are kept; the one reported least recently is
  forgotten first (its play, if not recorded, starts over under a new session).

No I/O and no clock of its own: times come in as arguments (monotonic seconds).
`lock` is for the endpoint: it holds it while it writes a play and its receipts, so
two sessions of one listener never sign receipts from the same running total.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import trio

from protocol.errors import ChorusError

__all__ = [
    "MAX_PLAYBACK_RATE",
    "MAX_SESSIONS",
    "PlaySession",
    "PlaySessions",
    "SessionConflict",
    "credit",
]

#: Media time a session can gain per second of wall time, at most.
MAX_PLAYBACK_RATE = 4
#: Sessions kept at once (each is a few hundred bytes).
MAX_SESSIONS = 4096


class SessionConflict(ChorusError):
    """A report names another listener, release or track than its session's first."""


@dataclass
class PlaySession:
    """One listening session: what is played, by whom, how much so far, and its play."""

    id: str
    listener: bytes  # the listener's public key
    release: str  # release id (entry CID text)
    track: str  # track CID text
    duration_ms: int
    started: float  # monotonic seconds of the first report
    #: peer -> verified bytes received from it when the session started (the
    #: exchange's counters): what the node fetched for this play is the growth.
    counters: Mapping[str, int] = field(default_factory=dict)
    played_ms: int = 0
    #: the play entry's id once recorded, its outcome ("paid", "unpaid", "free"),
    #: and the receipts signed with it
    recorded: str | None = None
    outcome: str | None = None
    receipts: list[str] = field(default_factory=list)


def credit(previous: int, reported: int, duration_ms: int, elapsed_s: float) -> int:
    """The session's progress after a report: never less than before, never more than
    the track, never more than MAX_PLAYBACK_RATE times the time since it started."""
    possible = int(max(elapsed_s, 0.0) * 1000) * MAX_PLAYBACK_RATE
    return max(previous, min(reported, duration_ms, possible))


class PlaySessions:
    """The sessions of one node (the daemon owns one: `Daemon.play_sessions`)."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, PlaySession] = OrderedDict()
        self.lock = trio.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> PlaySession | None:
        return self._sessions.get(session_id)

    def open(
        self,
        session_id: str,
        listener: bytes,
        release: str,
        track: str,
        duration_ms: int,
        now: float,
        counters: Mapping[str, int],
    ) -> PlaySession:
        """The session `session_id`, made on its first report; SessionConflict if it
        was opened for another listener, release or track."""
        session = self._sessions.get(session_id)
        if session is None:
            session = PlaySession(
                session_id, listener, release, track, duration_ms, now, dict(counters)
            )
            self._sessions[session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return session
        if (session.listener, session.release, session.track) != (listener, release, track):
            raise SessionConflict(
                f"session {session_id!r} is playing track {session.track} of release "
                f"{session.release} for key {session.listener.hex()}; start a new session "
                "for another track or listener"
            )
        self._sessions.move_to_end(session_id)
        return session

    def report(self, session: PlaySession, played_ms: int, now: float) -> int:
        """Take a progress report; the session's (credited) progress after it."""
        session.played_ms = credit(
            session.played_ms, played_ms, session.duration_ms, now - session.started
        )
        return session.played_ms
