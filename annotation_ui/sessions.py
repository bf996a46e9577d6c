"""Signed-in sessions: which login cookie belongs to whom, for how long, and when it ends.

Gradio keeps `app.tokens`, a plain dict of cookie token -> user name, read by every route that
asks who is signed in (and by the JSON API). `SessionTable` takes its place: a mapping that
answers only for sessions still alive, so Gradio's routes and ours end a session at the same
moment. A session ends
- after `idle_seconds` without a request, and `max_seconds` after its login at the latest;
- when the account's password or role changes, or the account is removed (a stamp of the
  credentials is taken at login and compared on use, re-read from the database at most every
  `stamp_seconds`, so a change made by `align annotate add-user --replace` in another process
  takes effect within that time);
- on logout (Gradio's /logout removes the user's tokens from this table).
Time is injected (`clock`), so expiry is tested to the second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass


@dataclass
class Session:
    user: str
    stamp: str
    opened: float
    seen: float


class SessionTable(MutableMapping):
    """token -> user name, for live sessions only (see the module docstring)."""

    def __init__(
        self,
        stamp_of: Callable[[str], str | None],
        idle_seconds: float,
        max_seconds: float,
        stamp_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stamp_of = stamp_of
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self.stamp_seconds = stamp_seconds
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._stamps: dict[str, tuple[float, str | None]] = {}  # user -> (read at, stamp)
        self._lock = threading.Lock()

    def open(self, token: str, user: str) -> None:
        """A new session for `user`, who has just proved their password."""
        stamp = self.stamp_of(user)
        if stamp is None:
            raise KeyError(user)
        t = self.clock()
        with self._lock:
            self._stamps[user] = (t, stamp)
            self._sessions[token] = Session(user, stamp, opened=t, seen=t)
            self._forget_ended(t)

    def _current_stamp(self, user: str, t: float) -> str | None:
        """The account's stamp, read again when the remembered one is `stamp_seconds` old. The
        read is made outside the table's lock, so other lookups never wait on the database."""
        with self._lock:
            read_at, stamp = self._stamps.get(user, (None, None))
        if read_at is not None and t - read_at < self.stamp_seconds:
            return stamp
        stamp = self.stamp_of(user)
        with self._lock:
            self._stamps[user] = (t, stamp)
        return stamp

    def _alive(self, session: Session, t: float) -> bool:
        return t - session.seen < self.idle_seconds and t - session.opened < self.max_seconds

    def _forget_ended(self, t: float) -> None:
        """Drop sessions past their time (the table never grows without bound)."""
        for token in [k for k, s in self._sessions.items() if not self._alive(s, t)]:
            del self._sessions[token]

    # -- the mapping Gradio reads ------------------------------------------------------------
    def __getitem__(self, token: str) -> str:
        t = self.clock()
        with self._lock:
            session = self._sessions.get(token) if isinstance(token, str) else None
            alive = session is not None and self._alive(session, t)
            if session is not None and not alive:
                del self._sessions[token]
        if not alive or self._current_stamp(session.user, t) != session.stamp:
            with self._lock:
                self._sessions.pop(token, None)
            raise KeyError(token)
        session.seen = t
        return session.user

    def __setitem__(self, token: str, user: str) -> None:
        self.open(token, user)

    def __delitem__(self, token: str) -> None:
        with self._lock:
            del self._sessions[token]

    def __iter__(self) -> Iterator[str]:
        """Live sessions only: Gradio's logout looks each token up while it walks the table."""
        t = self.clock()
        with self._lock:
            self._forget_ended(t)
            sessions = list(self._sessions.items())
        return iter([k for k, s in sessions if self._current_stamp(s.user, t) == s.stamp])

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def end_user(self, user: str) -> int:
        """End every session of `user`; returns how many there were."""
        with self._lock:
            tokens = [k for k, s in self._sessions.items() if s.user == user]
            for token in tokens:
                del self._sessions[token]
            return len(tokens)
