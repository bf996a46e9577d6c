"""Login throttling: how many password tries whom, from where, and when (pure; time injected).

Three counters, after OWASP's Authentication Cheat Sheet ("lock-out by account alone lets anyone
lock a known user out; count per account *and* address, and slow the account down globally"):
- per account *at an address* (`user@address`): `free_tries` tries, then each further one waits
  a doubling delay (1 s, 2 s, 4 s, ... up to `max_delay`). This is the lock a guesser meets.
  It is theirs alone: the account's owner, from her own address, is not locked by it.
- per address, over all accounts: four times as many tries, the same doubling. One address
  spraying names (or one password over many names) is slowed. Behind a reverse proxy every
  client has the proxy's address unless the proxy is trusted (`server.trusted_proxies`).
- per account over all addresses: four times as many tries, then a delay that doubles only up
  to `ACCOUNT_MAX_DELAY` (30 s): guessing from many addresses at once is slowed, while a
  stranger can never lock the owner out for longer than that, and not at all from an address
  where she has signed in before (`known`).
An attempt is counted *before* the password is checked, under one lock, so a burst of N
simultaneous tries gets exactly as many as a slow sequence would. A success clears the account's
counts and gives the address its try back (a team behind one NAT is not slowed by its own
logins). Entries quiet for `forget_seconds` are dropped: the table does not grow for ever, and a
lock earned an hour ago is not renewed at full length by one typo.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

ACCOUNT_MAX_DELAY = 30.0  # seconds: the longest wait a stranger can cause an account's owner
KNOWN_SECONDS = 30 * 24 * 3600.0  # an address where the owner signed in is trusted this long
SWEEP_SECONDS = 60.0  # how often old entries are looked for


@dataclass
class _Tries:
    count: int = 0
    last: float = 0.0


@dataclass
class Counter:
    """Tries per key; past `free_tries` the next one waits base_delay * 2**(tries - free_tries)."""

    free_tries: int
    base_delay: float = 1.0
    max_delay: float = 900.0
    keys: dict[str, _Tries] = field(default_factory=dict)

    def delay(self, count: int) -> float:
        """Seconds after the last try before the next one, with `count` tries made."""
        if count < self.free_tries:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** (count - self.free_tries))

    def wait(self, key: str, t: float) -> float:
        entry = self.keys.get(key)
        return 0.0 if entry is None else max(0.0, entry.last + self.delay(entry.count) - t)

    def count(self, key: str, t: float) -> None:
        entry = self.keys.setdefault(key, _Tries())
        entry.count, entry.last = entry.count + 1, t

    def refund(self, key: str) -> None:
        entry = self.keys.get(key)
        if entry is not None:
            entry.count = max(0, entry.count - 1)

    def clear(self, key: str) -> None:
        self.keys.pop(key, None)

    def forget(self, t: float, quiet_seconds: float) -> None:
        for key in [k for k, e in self.keys.items() if t - e.last >= quiet_seconds and self.wait(k, t) == 0]:
            del self.keys[key]


class LoginThrottle:
    """The three counters of the module docstring, changed together under one lock."""

    def __init__(
        self,
        free_tries: int = 5,
        max_delay: float = 900.0,
        forget_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.pairs = Counter(free_tries, max_delay=max_delay)
        self.addresses = Counter(4 * free_tries, max_delay=max_delay)
        self.accounts = Counter(4 * free_tries, max_delay=min(max_delay, ACCOUNT_MAX_DELAY))
        self.known: dict[tuple[str, str], float] = {}
        self.forget_seconds = max(forget_seconds, 2 * max_delay)
        self.clock = clock
        self._lock = threading.Lock()
        self._swept = clock()

    def _keys(self, user: str, address: str) -> list[tuple[Counter, str]]:
        keys = [(self.pairs, f"{user}@{address}"), (self.addresses, address)]
        if (user, address) not in self.known:
            keys.append((self.accounts, user))
        return keys

    def begin(self, user: str, address: str) -> float:
        """0.0: the try may go ahead and is counted now. Otherwise the seconds to wait; nothing counted."""
        with self._lock:
            t = self.clock()
            self._sweep(t)
            keys = self._keys(user, address)
            wait = max(counter.wait(key, t) for counter, key in keys)
            if wait > 0:
                return wait
            for counter, key in keys:
                counter.count(key, t)
            return 0.0

    def succeeded(self, user: str, address: str) -> None:
        """The password was right: the account's counts cleared, the address's try given back."""
        with self._lock:
            self.pairs.clear(f"{user}@{address}")
            self.accounts.clear(user)
            self.addresses.refund(address)
            self.known[(user, address)] = self.clock()

    def _sweep(self, t: float) -> None:
        if t - self._swept < SWEEP_SECONDS:
            return
        self._swept = t
        for counter in (self.pairs, self.addresses, self.accounts):
            counter.forget(t, self.forget_seconds)
        for key in [k for k, seen in self.known.items() if t - seen >= KNOWN_SECONDS]:
            del self.known[key]

    def size(self) -> int:
        """Entries held (what the sweep keeps bounded)."""
        with self._lock:
            return sum(len(c.keys) for c in (self.pairs, self.addresses, self.accounts)) + len(self.known)
