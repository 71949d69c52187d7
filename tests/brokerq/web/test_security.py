"""The safety rules of issue 14: read-only by default, CSRF on actions, a token on everything
when one is set, CSP on every response, secrets masked, payloads escaped."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from brokerq.web.queues import Queue
from brokerq.web.security import COOKIE
from tests.brokerq.web.conftest import client_for, fill

ACTIONS = {
    "retry": {"all": "1"},
    "purge": {"all": "1"},
    "pause": {},
    "resume": {},
    "revoke": {"job_id": "some-id"},
}


@pytest.fixture
def sqlite_queue(make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]) -> Queue:
    (q,) = queues_for(make_config("sqlite"))
    fill(q.broker)
    return q


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_read_only_refuses_every_action_and_draws_no_button(
    sqlite_queue: Queue, action: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for([sqlite_queue])
    page = client.get("/q/jobs").text
    assert "data-action=" not in page and 'name="csrf"' not in page
    with caplog.at_level(logging.INFO, logger="brokerq.web.audit"):
        r = client.post(f"/q/jobs/do/{action}", data={**ACTIONS[action], "csrf": "x"})
    assert r.status_code == 403
    (line,) = [rec.getMessage() for rec in caplog.records if rec.name == "brokerq.web.audit"]
    assert "action=refused" in line and f"/q/jobs/do/{action}" in line and "read-only" in line
    assert sqlite_queue.broker.stats()["dead"] == 1  # nothing changed


def test_any_other_method_is_refused_when_read_only(sqlite_queue: Queue) -> None:
    client = client_for([sqlite_queue])
    for method in ("PUT", "PATCH", "DELETE"):
        assert client.request(method, "/q/jobs").status_code == 403


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_actions_need_the_csrf_token(sqlite_queue: Queue, action: str) -> None:
    client = client_for([sqlite_queue], allow_actions=True)
    r = client.post(f"/q/jobs/do/{action}", data=ACTIONS[action])
    assert r.status_code == 403
    r = client.post(f"/q/jobs/do/{action}", data={**ACTIONS[action], "csrf": "forged.token.x"})
    assert r.status_code == 403
    assert sqlite_queue.broker.stats()["dead"] == 1


def test_a_token_from_another_origin_is_refused(sqlite_queue: Queue) -> None:
    client = client_for([sqlite_queue], allow_actions=True)
    token = csrf_of(client.get("/q/jobs").text)
    r = client.post(
        "/q/jobs/do/retry",
        data={"all": "1", "csrf": token},
        headers={"origin": "http://evil.example"},
    )
    assert r.status_code == 403


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_action_works_with_actions_allowed_and_the_token(
    sqlite_queue: Queue, action: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for([sqlite_queue], allow_actions=True)
    token = csrf_of(client.get("/q/jobs").text)
    with caplog.at_level(logging.INFO, logger="brokerq.web.audit"):
        r = client.post(f"/q/jobs/do/{action}", data={**ACTIONS[action], "csrf": token})
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("/q/jobs?msg=")
    audit = [rec.getMessage() for rec in caplog.records if rec.name == "brokerq.web.audit"]
    assert len(audit) == 1 and f"action={action}" in audit[0] and "when=" in audit[0]
    assert "who=none" in audit[0] and "from=" in audit[0]
    flash = client.get(r.headers["location"]).text
    assert 'id="flash"' in flash
    stats = sqlite_queue.broker.stats()
    if action == "retry":
        assert stats["dead"] == 0 and "retry: 1 dead letter(s)" in flash
    elif action == "purge":
        assert stats["dead"] == 0 and "purge: 1 dead letter(s)" in flash
    elif action == "revoke":
        assert "not found" in flash
    else:  # pause / resume: done where the backend can, else says so
        assert f"{action}: done" in flash or "not supported" in flash


def test_retry_one_dead_letter_by_ref(sqlite_queue: Queue) -> None:
    client = client_for([sqlite_queue], allow_actions=True)
    page = client.get("/q/jobs").text
    (ref,) = re.findall(r'data-ref="([^"]+)"', page)
    r = client.post("/q/jobs/do/retry", data={"ref": ref, "csrf": csrf_of(page), "next": "//evil"})
    assert r.status_code == 303 and r.headers["location"].startswith("/q/jobs?")
    assert sqlite_queue.broker.stats()["dead"] == 0


def test_retry_without_refs_or_all_is_a_400(sqlite_queue: Queue) -> None:
    client = client_for([sqlite_queue], allow_actions=True)
    token = csrf_of(client.get("/q/jobs").text)
    assert client.post("/q/jobs/do/retry", data={"csrf": token}).status_code == 400
    assert sqlite_queue.broker.stats()["dead"] == 1


PATHS = [
    "/",
    "/fragments/cards",
    "/q/jobs",
    "/dead",
    "/workers",
    "/job?id=x",
    "/static/app.css",
    "/static/vendor/htmx.min.js",
    "/static/vendor/pico.min.css",
]


def test_with_a_token_every_request_needs_it(sqlite_queue: Queue) -> None:
    client = client_for([sqlite_queue], token="s3cret-token", allow_actions=True)
    for path in PATHS:
        r = client.get(path)
        assert r.status_code == 401, path
        assert "alert" not in r.text and "jobs.db" not in r.text
        r = client.get(path, headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401, path
        r = client.get(path, headers={"authorization": "Bearer s3cret-token"})
        assert r.status_code == 200, path
    assert client.post("/q/jobs/do/retry", data={"all": "1"}).status_code == 401
    # a browser page without the token gets the login form, still with 401
    r = client.get("/", headers={"accept": "text/html"})
    assert r.status_code == 401 and 'action="/login"' in r.text


def test_login_sets_a_signed_httponly_samesite_cookie(sqlite_queue: Queue) -> None:
    client = client_for([sqlite_queue], token="s3cret-token")
    assert client.post("/login", data={"token": "nope"}).status_code == 401
    r = client.post("/login", data={"token": "s3cret-token", "next": "/q/jobs"})
    assert r.status_code == 303 and r.headers["location"] == "/q/jobs"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "s3cret-token" not in cookie
    assert client.get("/q/jobs").status_code == 200  # the client keeps the cookie
    assert client.get("/static/app.css").status_code == 200
    tampered = client.cookies[COOKIE][:-3] + "abc"
    client.cookies.clear()
    client.cookies.set(COOKIE, tampered)
    assert client.get("/q/jobs").status_code == 401


def test_a_cookie_for_another_token_is_refused(sqlite_queue: Queue) -> None:
    one = client_for([sqlite_queue], token="token-one")
    one.post("/login", data={"token": "token-one"})
    two = client_for([sqlite_queue], token="token-two")
    two.cookies.set(COOKIE, one.cookies[COOKIE])
    assert one.get("/").status_code == 200
    assert two.get("/").status_code == 401


def test_csp_and_headers_on_every_response(sqlite_queue: Queue) -> None:
    client = client_for([sqlite_queue])
    for path in [*PATHS, "/nope"]:
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert (
            "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        )
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    html = client.get("/").text
    # no inline script or style anywhere: every <script> has a src, no style= attributes
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert " style=" not in html and "<style" not in html
    assert re.findall(r"<[a-z]+\s[^>]*\son[a-z]+=", html) == []  # no onclick= handlers


def test_without_a_token_only_loopback_host_headers(sqlite_queue: Queue) -> None:
    client = client_for([sqlite_queue])
    assert client.get("/", headers={"host": "localhost:8080"}).status_code == 200
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400


def test_payload_and_headers_are_capped_and_masked(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config("memory"))
    from brokerq.outcome import Failure

    with q.broker.producer() as p:
        p.push(
            b"<script>" + b"A" * 100_000,
            headers={"password": "pw1", "url": "redis://u:pw2@h:6379/0"},
        )
    with q.broker.source() as s:
        d = s.receive(5)
        assert d is not None
        s.dead(d, Failure("Boom", "<img src=x onerror=alert(1)>"))
    client = client_for([q])
    page = client.get("/q/jobs").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    (ref,) = re.findall(r'data-ref="([^"]+)"', page)
    letter = client.get("/q/jobs/dead", params={"ref": ref}).text
    assert "<script>" not in letter and "&lt;script&gt;" in letter
    assert letter.count("A") < 5000  # 4 KiB shown of 100 KB
    assert "100,008 bytes" in letter
    assert "pw1" not in letter and "pw2" not in letter and "redis://u:" in letter


def test_no_open_redirect_and_no_forged_flash_lines(sqlite_queue: Queue) -> None:
    from brokerq.web.security import local_path

    for bad in ("//evil.example/x", "/\\evil.example", "https://evil.example", "evil", "/a\r\nb"):
        assert local_path(bad, "/fallback") == "/fallback", bad
    assert local_path("/q/jobs?page=2") == "/q/jobs?page=2"
    client = client_for([sqlite_queue], token="t0k", allow_actions=True)
    r = client.post("/login", data={"token": "t0k", "next": "/\\evil.example"})
    assert r.headers["location"] == "/"
    page = client.get("/", params={"msg": "Your queues were hacked: call +1 555", "sig": "x"})
    assert "hacked" not in page.text  # only lines the dashboard signed are shown


def test_audit_names_the_login_session(
    sqlite_queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for([sqlite_queue], token="t0k", allow_actions=True)
    client.post("/login", data={"token": "t0k"})
    token = csrf_of(client.get("/q/jobs").text)
    with caplog.at_level(logging.INFO, logger="brokerq.web.audit"):
        assert client.post("/q/jobs/do/purge", data={"all": "1", "csrf": token}).status_code == 303
    (line,) = [r.getMessage() for r in caplog.records if r.name == "brokerq.web.audit"]
    assert re.search(r"who=cookie:\S{8} ", line), line
