"""The annotation server on an open network: cross-site requests refused (403, nothing stored),
password guessing slowed (429 + Retry-After, logged), short new passwords refused, bad input
from a signed-in user one clear 4xx. On SQLite and, where the CI's server
runs, PostgreSQL. Backups: test_annotate_backup.py; sessions: test_annotate_sessions.py; the
throttle: test_annotate_throttle.py; HTTPS: test_annotate_sessions.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import httpx
import pytest
from annotate_db import PASSWORD

from align.config.annotate import AnnotateConfig, ServerConfig
from align.errors import AlignInputError
from annotation_ui.testing import HttpAnnotator, running_app


def test_cross_site_requests_get_403_and_store_nothing(team_store):
    store = team_store
    config = AnnotateConfig(
        min_annotations_per_item=2, server=ServerConfig(allowed_origins=["https://rank.example.org"])
    )
    with running_app(store, config) as url:
        alice = HttpAnnotator(url, "alice", PASSWORD)  # signed in: her cookie rides on every request below
        item = alice.call("fetch")
        submit = {"item_id": item["item_id"], "ranks": [1, 2, 3]}
        endpoint = f"{url}api/v1/submit"
        evil = {"Origin": "http://evil.example"}
        cases = [  # what another site's page can make a browser send, and what a script forgets
            ({"content": json.dumps(submit), "headers": {**evil, "Content-Type": "text/plain"}}, "Content-Type"),
            ({"json": submit, "headers": evil}, "not this server's"),
            ({"json": submit, "headers": {"Origin": "null"}}, "not this server's"),
            ({"json": submit, "headers": {"Origin": "", "Referer": "http://evil.example/page"}}, "not this server's"),
            ({"json": submit, "headers": {"Origin": ""}}, "no Origin or Referer"),
        ]
        for kwargs, words in cases:
            response = alice.http.post(endpoint, **kwargs)
            assert response.status_code == 403, (kwargs, response.text)
            assert words in response.json()["error"], (kwargs, response.json())
        assert store.rankings() == []
        # Gradio's own routes: a foreign page is refused too
        gradio = alice.http.post(f"{url}gradio_api/run/submit", json={"data": []}, headers=evil)
        assert gradio.status_code == 403 and store.rankings() == []
        # the app's own origin, a page's Referer, and a configured proxy origin are accepted
        assert alice.call("progress")["done"] == 0
        referer = {"Origin": "", "Referer": f"{url}?tab=rank"}
        assert alice.http.post(f"{url}api/v1/progress", json={}, headers=referer).status_code == 200
        proxy = {"Origin": "https://rank.example.org"}
        assert alice.http.post(endpoint, json=submit, headers=proxy).status_code == 200
        assert len(store.rankings()) == 1
        alice.close()


def test_password_guessing_is_slowed_per_account(team_store, caplog):
    store = team_store
    config = AnnotateConfig(min_annotations_per_item=2, server=ServerConfig(login_free_tries=3))
    with running_app(store, config) as url, httpx.Client(base_url=url) as client:
        login = lambda name, password: client.post("login", data={"username": name, "password": password})  # noqa: E731
        with caplog.at_level("WARNING", logger="align.annotate.security"):
            assert [login("alice", "wrong-guess").status_code for _ in range(3)] == [400, 400, 400]
            locked = login("alice", PASSWORD)  # past the free tries: even the right password waits 1 s
            assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
            assert "too many failed logins" in locked.json()["error"]
            assert login("bob", PASSWORD).status_code == 200  # another account is not locked
        assert any("failed login for 'alice'" in r.getMessage() for r in caplog.records)
        assert any("locked" in r.getMessage() for r in caplog.records)


def test_short_new_passwords_exit_2_and_existing_accounts_keep_working(team_store, tmp_path):
    store = team_store
    with pytest.raises(AlignInputError, match="at least 8"):
        store.add_annotator("carol", "short7!")
    # an account made before the rule (a 4-character password, written as the old version did)
    from sqlalchemy import insert

    from annotation_ui.auth import hash_password
    from annotation_ui.store import Annotator

    with store.engine.begin() as c:
        c.execute(insert(Annotator), [{"name": "old", "role": "annotator", "password_hash": hash_password("abcd")}])
    assert store.check_login("old", "abcd")
    if store.is_sqlite:
        out = subprocess.run(
            [sys.executable, "-m", "align", "annotate", "add-user", "dan", "--db", store.url, "--password", "pw1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2 and "at least 8" in out.stderr and "Traceback" not in out.stderr


def test_bad_input_from_a_signed_in_user_is_one_400_and_stores_nothing(team_store, caplog):
    """The requests that got a 500 and a traceback: each is now one clear 4xx, nothing stored."""
    store = team_store
    config = AnnotateConfig(min_annotations_per_item=2, server=ServerConfig(max_comment_chars=100))
    with caplog.at_level("WARNING"), running_app(store, config) as url:
        alice = HttpAnnotator(url, "alice", PASSWORD)
        item = alice.call("fetch")["item_id"]
        raw = {"Content-Type": "application/json"}
        cases = [
            ("[" * 100_000 + "]" * 100_000, 400, "not JSON"),  # nested 100,000 deep
            (f'{{"item_id": {item}, "ranks": [NaN, 1, 2]}}', 400, "not JSON"),
            (f'{{"item_id": {item}, "ranks": [Infinity, 1, 2]}}', 400, "not JSON"),
            (f'{{"item_id": {item}, "ranks": [1e400, 1, 2]}}', 400, "not JSON"),
            ('{"item_id": "²", "ranks": [1, 2, 3]}', 400, "whole number"),
            (f'{{"item_id": {2**70}, "ranks": [1, 2, 3]}}', 400, "item_id"),
            ('{"item_id": "' + "9" * 5000 + '", "ranks": [1, 2, 3]}', 400, "whole number"),
            (f'{{"item_id": {item}, "ranks": [1.5, 2, 3]}}', 400, "whole numbers"),
            (json.dumps({"item_id": item, "ranks": [1, 2, 3], "comment": "x" * 101}), 400, "at most 100 characters"),
            (json.dumps({"item_id": item, "ranks": [1, 2, 3], "comment": "x" * (2 << 20)}), 413, "takes at most"),
        ]
        for body, status, words in cases:
            response = alice.http.post("api/v1/submit", content=body, headers=raw)
            assert response.status_code == status, (body[:60], response.status_code, response.text[:200])
            assert words in response.json()["error"], (body[:60], response.json())
        assert store.rankings() == []
        # a 64 MB login body is refused from its Content-Length, before a byte of it is read
        host, port = url.split("//")[1].strip("/").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                b"POST /login HTTP/1.1\r\nHost: "
                + host.encode()
                + b"\r\nContent-Type: application/x-www-form-urlencoded"
                b"\r\nContent-Length: 67108864\r\n\r\nusername=alice&password="
            )
            assert sock.recv(4096).split(b"\r\n")[0].endswith(b"413 Request Entity Too Large")
        chunked = alice.http.post("api/v1/progress", content=iter([b"{}"]), headers=raw)  # no length: chunked
        assert chunked.status_code == 411
        assert alice.call("progress")["done"] == 0
        alice.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info], "a traceback was logged"
