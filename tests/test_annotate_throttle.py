"""Login throttling without holes and without lock-outs: the counters worked out by hand, then the
four ways around the old guard (a repeated field, a capitalised content type, a burst sent at
once, a proxy that hid every address) and the lock-out a stranger could inflict, against a live
server. Also the password hasher at a raised cost."""

from __future__ import annotations

import concurrent.futures
import hashlib

import httpx
import pytest
from annotate_db import PASSWORD

from align.config.annotate import AnnotateConfig, ServerConfig
from annotation_ui import auth
from annotation_ui.store import Store
from annotation_ui.testing import running_app, sample_items
from annotation_ui.throttle import ACCOUNT_MAX_DELAY, Counter, LoginThrottle


def test_counter_doubles_after_the_free_tries():
    counter = Counter(free_tries=3, base_delay=1.0, max_delay=8.0)
    assert [counter.delay(n) for n in range(8)] == [0, 0, 0, 1, 2, 4, 8, 8]
    for t in (0.0, 0.0, 0.0, 0.0):
        counter.count("k", t)  # 4 tries at t=0: the next waits delay(4) = 2 s
    assert counter.wait("k", 0.5) == 1.5 and counter.wait("other", 0.5) == 0.0
    counter.refund("k")
    assert counter.wait("k", 0.5) == 0.5  # 3 tries: delay(3) = 1 s after the last


def test_a_stranger_locks_only_himself_and_never_the_owner_for_long():
    now = [0.0]
    throttle = LoginThrottle(free_tries=5, max_delay=900.0, clock=lambda: now[0])
    assert [throttle.begin("alice", "6.6.6.6") for _ in range(5)] == [0.0] * 5
    assert throttle.begin("alice", "6.6.6.6") == 1.0  # the guesser waits ...
    assert throttle.begin("alice", "10.0.0.5") == 0.0  # ... alice, from her own address, does not
    throttle.succeeded("alice", "10.0.0.5")
    # many addresses guessing at alice: the account-wide counter slows them, at most 30 s a try
    for i in range(40):
        now[0] += 0.001
        throttle.begin("alice", f"7.7.{i}.1")
    waits = [throttle.begin("alice", f"8.8.{i}.1") for i in range(3)]
    assert 0 < max(waits) <= ACCOUNT_MAX_DELAY
    assert throttle.begin("alice", "10.0.0.5") == 0.0  # an address where she signed in before is exempt


def test_one_address_spraying_names_is_slowed_and_entries_are_forgotten():
    now = [0.0]
    throttle = LoginThrottle(free_tries=5, max_delay=900.0, forget_seconds=3600.0, clock=lambda: now[0])
    assert [throttle.begin(f"user{i}", "6.6.6.6") for i in range(20)] == [0.0] * 20
    assert throttle.begin("user20", "6.6.6.6") == 1.0  # 4 x 5 names from one address
    assert throttle.begin("user20", "6.6.6.7") == 0.0
    assert throttle.size() > 40
    now[0] = 3600.0 + 60.0  # an hour of quiet, past the sweep interval
    throttle.begin("bob", "1.2.3.4")
    assert throttle.size() == 3  # only bob's fresh entries are left
    assert throttle.begin("user20", "6.6.6.6") == 0.0


def test_a_burst_gets_exactly_the_free_tries():
    throttle = LoginThrottle(free_tries=5)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        waits = list(pool.map(lambda _: throttle.begin("alice", "6.6.6.6"), range(40)))
    assert waits.count(0.0) == 5


@pytest.fixture
def app(tmp_path):
    def serve(**server):
        store = Store(str(tmp_path / f"t{len(list(tmp_path.iterdir()))}.db"), quota=2)
        for name in ("alice", "bob"):
            store.add_annotator(name, PASSWORD)
        store.add_items(sample_items(2))
        config = AnnotateConfig(min_annotations_per_item=2, server=ServerConfig(login_free_tries=3, **server))
        return store, running_app(store, config)

    return serve


def multipart(fields: list[tuple[str, str]], content_type: str = "multipart/form-data") -> dict:
    boundary = "----aligntest"
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields)
    return {"content": f"{body}--{boundary}--\r\n", "headers": {"Content-Type": f"{content_type}; boundary={boundary}"}}


def test_the_four_ways_around_the_old_guard_are_closed(app):
    store, serving = app()
    with serving as url, httpx.Client(base_url=url, timeout=60) as client:
        # a capitalised content type is read as the form it is: three wrong tries count ...
        capital = [
            client.post("login", **multipart([("username", "alice"), ("password", "wrong")], "Multipart/Form-Data"))
            for _ in range(3)
        ]
        assert [r.status_code for r in capital] == [400, 400, 400]
        # ... so the fourth try waits, even with the right password
        assert client.post("login", data={"username": "alice", "password": PASSWORD}).status_code == 429
        # a repeated field: no second reading of the form picks the other name
        doubled = client.post(
            "login",
            content=f"username=decoy&username=alice&password={PASSWORD}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert doubled.status_code in (400, 429) and "set-cookie" not in doubled.headers
        doubled = client.post(
            "login", **multipart([("username", "decoy"), ("username", "alice"), ("password", PASSWORD)])
        )
        assert doubled.status_code in (400, 429) and "set-cookie" not in doubled.headers
        # a burst of 40 wrong logins for bob sent at once: at most the free tries get checked
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            burst = list(
                pool.map(
                    lambda _: (
                        httpx.post(f"{url}login", data={"username": "bob", "password": "nope"}, timeout=60).status_code
                    ),
                    range(40),
                )
            )
        assert burst.count(400) == 3 and burst.count(429) == 37
    store.close()


def test_behind_a_trusted_proxy_addresses_count_and_a_stranger_locks_out_nobody(app, caplog):
    store, serving = app(trusted_proxies=["127.0.0.1"])
    with serving as url, httpx.Client(base_url=url, timeout=60) as client:

        def login(name, password, address):
            return client.post(
                "login",
                data={"username": name, "password": password},
                headers={"X-Forwarded-For": f"{address}, 127.0.0.1"},
            ).status_code

        # one attacker tries 21 unknown names: he is slowed, the team is not
        tries = [login(f"guess{i}", "x" * 8, "203.0.113.66") for i in range(21)]
        assert tries[:12] == [400] * 12 and 429 in tries
        # six wrong tries for alice from the attacker's address do not lock alice out
        assert all(login("alice", "wrong-pass", "203.0.113.66") == 429 for _ in range(6))
        assert login("alice", PASSWORD, "10.0.0.5") == 200
        assert login("bob", PASSWORD, "10.0.0.6") == 200
    store.close()
    store, serving = app()  # no trusted proxy: the header is ignored, and the server says why once
    with caplog.at_level("WARNING", logger="align.annotate.security"), serving as url:
        for _ in range(2):
            httpx.post(
                f"{url}login",
                data={"username": "bob", "password": PASSWORD},
                headers={"X-Forwarded-For": "10.0.0.9"},
                timeout=60,
            )
    warned = [r for r in caplog.records if "not in server.trusted_proxies" in r.getMessage()]
    assert len(warned) == 1
    store.close()


def test_a_raised_hashing_cost_works_and_scrypt_errors_are_not_wrong_passwords(monkeypatch):
    monkeypatch.setattr(auth, "SCRYPT_N", 2**15)  # 32 MiB per check: past OpenSSL's default maxmem
    stored = auth.hash_password("correct horse")
    assert stored.startswith("scrypt$32768$8$1$")
    assert auth.verify_password("correct horse", stored) and not auth.verify_password("wrong horse", stored)
    assert not auth.verify_password("x", "plaintext-password") and not auth.verify_password("x", "scrypt$3$8$1$ab$cd")

    def broken(*args, **kwargs):
        raise ValueError("[digital envelope routines] memory limit exceeded")

    monkeypatch.setattr(hashlib, "scrypt", broken)
    with pytest.raises(ValueError, match="memory limit"):  # loud, not "wrong password" for everyone
        auth.verify_password("correct horse", stored)
