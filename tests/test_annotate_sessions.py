"""Sessions on the annotation server: no credentialed answer to another site on any route (no
CORS, no preflight), Secure cookies and HSTS under HTTPS, sessions that end when idle, when old,
on a password reset, a role change or a removed account, and a logout that another site cannot
trigger. The exact requests an attacker on the same network sent, and their variants."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from annotate_db import PASSWORD

from align.config.annotate import AnnotateConfig, ServerConfig
from annotation_ui.guard import origin_of
from annotation_ui.sessions import SessionTable
from annotation_ui.store import Store
from annotation_ui.testing import running_app, sample_items

EVIL = "http://evil.example"


def signed_in(url: str, name: str, **client) -> httpx.Client:
    http = httpx.Client(base_url=url, headers={"Origin": origin_of(url)}, timeout=60, **client)
    response = http.post("login", data={"username": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return http


def api(http: httpx.Client, name: str = "progress") -> int:
    return http.post(f"api/v1/{name}", json={}).status_code


def test_session_table_ends_sessions_idle_old_and_on_changed_credentials():
    now, stamps = [0.0], {"alice": "annotator$h1", "bob": "annotator$h2"}
    table = SessionTable(stamps.get, idle_seconds=10, max_seconds=25, stamp_seconds=1.0, clock=lambda: now[0])
    table["t-alice"] = "alice"
    table["t-bob"] = "bob"
    for t in (9.0, 18.0):  # each use within 10 s of the last keeps it alive ...
        now[0] = t
        assert table.get("t-alice") == "alice"
    now[0] = 24.9
    assert table.get("t-alice") == "alice"
    now[0] = 25.0  # ... but never past 25 s after the login
    assert table.get("t-alice") is None and "t-alice" not in table
    assert table.get("t-bob") is None  # bob was idle from 0 to 25
    table["t-bob"] = "bob"
    stamps["bob"] = "admin$h2"  # a role change (or a password reset: another hash)
    now[0] = 25.5
    assert table.get("t-bob") == "bob"  # the stamp is re-read at most once a second ...
    now[0] = 26.0
    assert table.get("t-bob") is None  # ... then the session ends
    table["t-bob2"] = "bob"
    del stamps["bob"]  # removed account
    now[0] = 27.5
    assert table.get("t-bob2") is None and len(table) == 0
    with pytest.raises(KeyError):
        table["t-carol"] = "carol"  # no account, no session


def test_no_route_answers_another_site_and_no_preflight_is_granted(team_store):
    store = team_store
    with running_app(store, AnnotateConfig(min_annotations_per_item=2)) as url:
        alice = signed_in(url, "alice")
        evil = {"Origin": EVIL}
        for path in ("gradio_api/token", "gradio_api/user", "config", "gradio_api/info", ""):
            response = alice.get(path, headers=evil)
            assert response.status_code == 403, (path, response.status_code)
            assert not any(k.lower().startswith("access-control-") for k in response.headers), response.headers
        for origin in (EVIL, "null"):
            preflight = alice.options(
                "api/v1/submit",
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            )
            assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
        # the app's own page still reads its token; no CORS header is ever sent
        own = alice.get("gradio_api/token", headers={"Origin": origin_of(url)})
        assert own.status_code == 200 and own.json()["user"] == "alice"
        assert "access-control-allow-origin" not in own.headers
        assert own.headers["x-frame-options"] == "DENY" and own.headers["x-content-type-options"] == "nosniff"
        alice.close()


def test_password_reset_role_change_and_removal_end_sessions(team_store):
    store = team_store
    with running_app(store, AnnotateConfig(min_annotations_per_item=2)) as url:
        alice, bob = signed_in(url, "alice"), signed_in(url, "bob")
        assert api(alice) == api(bob) == 200
        reset = subprocess.run(
            [sys.executable, "-m", "align", "annotate", "add-user", "alice", "--replace"]
            + ["--db", store.url, "--password", "a-new-secret"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert reset.returncode == 0, reset.stderr
        time.sleep(1.1)  # sessions re-read an account's credentials at most once a second
        assert api(alice) == 401 and api(bob) == 200  # her old session is over; bob's is not
        assert alice.get("gradio_api/token").json()["user"] is None  # Gradio's own routes agree
        store.add_annotator("bob", PASSWORD, role="admin", replace=True)
        time.sleep(1.1)
        assert api(bob) == 401
        bob = signed_in(url, "bob")
        removed = subprocess.run(
            [sys.executable, "-m", "align", "annotate", "remove-user", "bob", "--db", store.url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert removed.returncode == 0, removed.stderr
        time.sleep(1.1)
        assert api(bob) == 401
        assert bob.post("login", data={"username": "bob", "password": PASSWORD}).status_code == 400
        assert [name for name, _ in store.annotators()] == ["alice"]  # bob's rankings and row stay
        unknown = subprocess.run(
            [sys.executable, "-m", "align", "annotate", "remove-user", "nobody", "--db", store.url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert unknown.returncode == 2 and "no annotator 'nobody' (accounts: alice)" in unknown.stderr
        alice.close()
        bob.close()


def test_idle_sessions_end_and_a_foreign_logout_is_refused(tmp_path):
    store = Store(str(tmp_path / "s.db"), quota=2)
    store.add_annotator("alice", PASSWORD)
    store.add_items(sample_items(2))
    config = AnnotateConfig(min_annotations_per_item=2, server=ServerConfig(session_idle_minutes=1.5 / 60))
    with running_app(store, config) as url:
        alice = signed_in(url, "alice")
        for headers in ({"Referer": f"{EVIL}/page"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": EVIL}):
            assert alice.get("logout", headers={"Origin": "", **headers}).status_code == 403
            assert api(alice) == 200  # still signed in
        time.sleep(1.0)
        assert api(alice) == 200  # a request within the idle time keeps the session
        time.sleep(1.8)
        assert api(alice) == 401  # idle longer than 1.5 s: over
        alice = signed_in(url, "alice")
        out = alice.get("logout", headers={"Origin": "", "Referer": f"{url}", "Sec-Fetch-Site": "same-origin"})
        assert out.status_code in (200, 302, 307) and api(alice) == 401
        alice.close()
    store.close()


def test_https_cookie_is_secure_strict_and_alone_and_hsts_is_sent(tmp_path):
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        + ["-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    store = Store(str(tmp_path / "tls.db"), quota=2)
    store.add_annotator("alice", PASSWORD)
    store.add_items(sample_items(2))
    server = ServerConfig(ssl_certfile=str(tmp_path / "cert.pem"), ssl_keyfile=str(tmp_path / "key.pem"))
    with running_app(store, AnnotateConfig(min_annotations_per_item=2, server=server)) as url:
        assert url.startswith("https://")
        with httpx.Client(base_url=url, verify=str(tmp_path / "cert.pem"), headers={"Origin": origin_of(url)}) as c:
            page = c.get("/")
            assert page.headers["strict-transport-security"].startswith("max-age=")
            login = c.post("login", data={"username": "alice", "password": PASSWORD})
            cookies = login.headers.get_list("set-cookie")
            assert len(cookies) == 1, cookies  # no second, "unsecure" cookie
            attributes = {part.strip().split("=")[0].lower() for part in cookies[0].split(";")}
            assert {"secure", "httponly", "samesite", "max-age"} <= attributes and "samesite=strict" in cookies[
                0
            ].lower()
            assert c.post("api/v1/progress", json={}).status_code == 200
            name, token = cookies[0].split(";")[0].split("=", 1)
            c.cookies.clear()
            c.cookies.set(name.replace("access-token-", "access-token-unsecure-"), token)
            assert c.post("api/v1/progress", json={}).status_code == 401  # the unsecure name is not a way in
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port is no way in
            httpx.get(url.replace("https://", "http://"), timeout=5)
    store.close()
    with pytest.raises(ValueError, match="go together"):
        ServerConfig(ssl_certfile=str(tmp_path / "cert.pem"))
