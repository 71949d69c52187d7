"""The dashboard in a real browser (Debian's headless chromium over the DevTools protocol).

Five real queues hold jobs (three sqlite, one kq, one dq); a worker dead-letters a job that
fails; the browser opens the overview, follows the dead letter, retries it (actions allowed)
and sees it handled. Screenshots of the overview and of a job page are saved as artifacts in
``$BROKERQ_ARTIFACTS`` (default ``test-artifacts/``) under ``web/``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brokerq.heartbeat import Heartbeat
from brokerq.message import Message
from brokerq.retry import RetryPolicy
from brokerq.web.queues import Queue
from tests.brokerq.web.cdp import Browser, chromium_binary, wait_for
from tests.brokerq.web.conftest import fill
from tests.brokerq.web.test_command import free_port
from tests.contract import running
from tests.services import REPO_ROOT, services_required

ARTIFACTS = Path(os.environ.get("BROKERQ_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "web"


@pytest.fixture
def chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        message = "chromium not found: scripts/test installs it (apt-get install chromium)"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture
def dashboard(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> Iterator[tuple[str, dict[str, Queue]]]:
    paths = [
        make_config("sqlite", name="orders", queue="orders"),
        make_config("sqlite", name="emails", queue="emails"),
        make_config("kq", name="events"),
        make_config("dq", name="reminders"),
        make_config("sqlite", name="reports", queue="reports"),
    ]
    queues = {q.name: q for q in queues_for(*paths)}
    for name, pending in (("orders", 12), ("reports", 4), ("events", 7), ("reminders", 3)):
        fill(queues[name].broker, dead=name in ("orders", "reminders"), pending=pending)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "brokerq",
            "web",
            *map(str, paths),
            "--port",
            str(port),
            "--allow-actions",
            "--refresh",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "BROKERQ_WEB_TOKEN"},
    )
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        wait_for(
            lambda: b"Uvicorn running" in b"".join(output) or proc.poll() is not None,
            60,
            "brokerq web to start",
        )
        assert proc.poll() is None, b"".join(output).decode()
        yield f"http://127.0.0.1:{port}", queues
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()
    log = b"".join(output).decode()
    assert "audit " in log and "action=retry" in log, log  # the retry was audit-logged
    assert "Traceback" not in log and " ERROR " not in log, log


def test_overview_dead_letter_retry_in_chromium(
    chromium: str, dashboard: tuple[str, dict[str, Queue]], tmp_path: Path
) -> None:
    url, queues = dashboard
    emails = queues["emails"].broker
    declined = threading.Event()
    declined.set()

    def send(msg: Message) -> None:
        if b"declined" in msg.value and declined.is_set():
            raise ValueError("card declined for order 1042")

    with emails.producer() as p:
        p.push(
            b'{"to": "ann@example.com", "order": 1042, "declined": true}',
            headers={"authorization": "Bearer hidden", "trace-id": "4bf92f3577b34da6"},
        )
        for i in range(5):
            p.push(f'{{"to": "user{i}@example.com"}}')
    policy = RetryPolicy(max_attempts=2, backoff=0.05, jitter=False)
    with (
        running(emails, send, retry=policy) as worker,
        Heartbeat(
            emails,
            name="emails-worker",
            queue="emails",
            concurrency=worker.concurrency,
            in_flight=lambda: worker.in_flight,
            every=1.0,
        ),
    ):
        wait_for(
            lambda: emails.stats()["dead"] == 1 and emails.stats()["pending"] == 0,
            60,
            "the failing email to be dead-lettered",
        )
        (letter,) = emails.dead_letters()
        job_id = letter.message.id

        browser = Browser(chromium, tmp_path / "profile")
        try:
            browser.goto(f"{url}/")
            wait_for(
                lambda: browser.evaluate("document.querySelectorAll('article.card').length") == 5,
                30,
                "five cards",
            )
            # htmx refreshes the cards by itself (CSP allows our script; no inline code)
            before = browser.text(".updated")
            wait_for(lambda: browser.text(".updated") != before, 30, "an htmx refresh")
            browser.screenshot(ARTIFACTS / "overview.png")
            text = browser.text("main")
            for name in ("orders", "emails", "events", "reminders", "reports"):
                assert name in text
            for word in ("PENDING", "DELAYED", "IN FLIGHT", "DEAD", "OLDEST", "LAG"):
                assert word in text.upper()
            # every card, counts and all, is visible without scrolling
            bottom = browser.evaluate(
                "Math.max(...[...document.querySelectorAll('article.card')]"
                ".map(e => e.getBoundingClientRect().bottom))"
            )
            assert bottom <= browser.evaluate("window.innerHeight"), bottom
            assert browser.evaluate("document.scrollingElement.scrollTop") == 0
            cell = browser.text("article[data-queue=emails] .cell.hot dd")
            assert cell.strip() == "1", cell

            browser.goto(f"{url}/q/emails")
            browser.click("table.letters a")
            wait_for(lambda: browser.ready("/q/emails/dead"), 30, "the dead letter page")
            page = browser.text("main")
            assert "card declined for order 1042" in page and job_id in page
            assert "hidden" not in page and "trace-id" in page  # the bearer value is masked
            browser.screenshot(ARTIFACTS / "dead-letter.png")

            declined.clear()  # the card works now: the retried job will succeed
            browser.click("button[data-action=retry]")
            wait_for(
                lambda: "retry: 1 dead letter(s)" in browser.text("#flash"),
                30,
                "the retry to be confirmed",
            )
            assert browser.evaluate("location.pathname") == "/q/emails"
            wait_for(
                lambda: (
                    emails.stats() == {**emails.stats(), "pending": 0, "dead": 0, "in_flight": 0}
                ),
                60,
                "the retried job to be handled",
            )

            browser.goto(f"{url}/job?id={job_id}")
            job_text = browser.text("main")
            # where the backend looks jobs up, the retried job is done; else the page says so
            assert "emails" in job_text
            assert "done" in job_text or "cannot look jobs up" in job_text, job_text
            browser.screenshot(ARTIFACTS / "job.png")
            browser.goto(f"{url}/")
            wait_for(
                lambda: browser.text("article[data-queue=emails] .cell.hot dd") == "",
                30,
                "the emails card to show no dead letter",
            )
            assert browser.console == [], browser.console  # no CSP violation, no JS error
        finally:
            browser.close()


def test_login_form_then_pages_and_assets_with_the_cookie(
    chromium: str, make_config: Callable[..., Path], tmp_path: Path
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "brokerq", "web", str(make_config("sqlite")), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "BROKERQ_WEB_TOKEN": "browser-token"},
    )
    url = f"http://127.0.0.1:{port}"
    browser = Browser(chromium, tmp_path / "profile")
    try:
        wait_for(lambda: _listening(port), 60, "brokerq web to listen")
        browser.goto(f"{url}/q/jobs")
        assert browser.evaluate("document.querySelector('form[action=\"/login\"]') !== null")
        assert [line for line in browser.console if "401" not in line] == []  # the page's own 401
        browser.console.clear()
        browser.evaluate(
            "document.querySelector('input[name=token]').value = 'browser-token';"
            "document.querySelector('form[action=\"/login\"]').submit()"
        )
        wait_for(
            lambda: browser.ready("/q/jobs") and "jobs" in browser.text("main"),
            30,
            "the queue page after logging in",
        )
        # the stylesheet and htmx came through with the cookie (both need the token); polled:
        # on a loaded machine the check ran once before htmx was evaluated
        wait_for(lambda: browser.evaluate("typeof htmx") == "object", 15, "htmx to load")
        bar = browser.evaluate(
            "getComputedStyle(document.querySelector('header.bar')).backgroundColor"
        )
        assert bar == "rgb(31, 41, 55)", bar
        cookie = browser.call("Network.getCookies", {"urls": [url]})["cookies"]
        assert [(c["httpOnly"], c["sameSite"]) for c in cookie] == [(True, "Strict")]
        assert browser.console == [], browser.console
    finally:
        browser.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
