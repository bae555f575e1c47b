"""The status page at /ui, end to end: a real gateway and fleet, driven by headless Chromium."""

from __future__ import annotations

import http.client
import json
import re
import sys
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from helpers import TESTS, ensure_debian

SCREENSHOT = TESTS.parent / "artifacts" / "ui-status.png"
ADMIN_KEY = "ui-test-admin-key"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def browser():
    executable = ensure_debian("chromium", "chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])  # tests run as root
        yield browser
        browser.close()


def _fleet(*models: str, extra: str = "") -> str:
    lines = ["memory: {headroom: 1.0, cpu_budget: 1000MiB}", "models:"]
    for spec in models:
        name, _, options = spec.partition(" ")
        command = [sys.executable, str(TESTS / "fake_openai.py"), "--port", "{port}", "--tag", name]
        options = options if "ttl:" in options else options + ", ttl: 0"
        lines.append(f"  {name}: {{runner: command, command: {command}, memory: 400MiB{options}}}")
    return extra + "\n".join(lines) + "\n"


@pytest.fixture
def open_ui(browser: Browser, gateway_factory):
    """Open a gateway's /ui: the page and the list its console errors and uncaught exceptions go to.

    Pages close before the gateways stop (this fixture depends on gateway_factory): an open log
    stream would otherwise hold the gateway's graceful shutdown for its full timeout.
    """
    pages: list[Page] = []

    def open_page(url: str) -> tuple[Page, list[str]]:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        pages.append(page)
        problems: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                problems.append(f"console: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: problems.append(f"exception: {exc}"))
        page.goto(url + "/ui")
        return page, problems

    yield open_page
    for page in pages:
        page.close()


def _badge(page: Page, model: str):
    return page.locator(f'#fleet tr[data-model="{model}"] .badge')


def _cell(page: Page, model: str, column: str):
    return page.locator(f'#fleet tr[data-model="{model}"] td[data-col="{column}"]')


def test_status_page_shows_the_fleet_and_loads_and_unloads(gateway_factory, open_ui, capsys):
    gw = gateway_factory(_fleet("alpha", "beta"))
    assert httpx.post(gw.url + "/v1/chat/completions", json={"model": "alpha", **CHAT}, timeout=30).status_code == 200
    rollback = {"at": "2026-01-02T03:04:05Z", "event": "rolled_back", "promotion": "p1", "route": "chat",
                "from": "alpha", "to": "beta", "who": "ops", "reason": "error_rate", "detail": "candidate error rate 40%"}
    (gw.home / "data" / "promotions.jsonl").write_text(json.dumps(rollback) + "\n")  # as a promotion records it

    page, problems = open_ui(gw.url)
    expect(_badge(page, "alpha")).to_have_text("ready")
    expect(_badge(page, "beta")).to_have_text("stopped")
    expect(_cell(page, "alpha", "ttl")).to_have_text("never")  # ttl: 0
    device = page.locator('#devices [data-device="cpu"]')
    expect(device.get_by_role("meter").first).to_be_visible()
    expect(device).to_contain_text("400 MiB estimated")
    expect(device).to_contain_text("1000 MiB budget")
    expect(page.locator("#requests tbody tr").first).to_contain_text("alpha")
    expect(page.locator("#promotions tbody tr").first).to_contain_text("rolled_back")
    expect(page.locator("#promotions tbody tr").first).to_contain_text("error_rate; candidate error rate 40%")
    expect(_cell(page, "alpha", "rate")).to_have_text("0.03")  # 2 tokens out in the last minute / 60 s
    expect(page.locator("#log")).to_contain_text("alpha is ready")
    expect(_cell(page, "alpha", "measured")).to_have_text(re.compile(r"\d+(\.\d)? [KM]iB"))  # sampled every 2 s

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    with capsys.disabled():
        print(f"\nUI screenshot (alpha ready, beta stopped): {SCREENSHOT}")

    page.get_by_role("button", name="Load beta", exact=True).click()
    expect(_badge(page, "beta")).to_have_text("ready", timeout=15_000)
    assert gw.running()["beta"]["state"] == "ready"
    page.get_by_role("button", name="Unload beta", exact=True).click()
    expect(_badge(page, "beta")).to_have_text("stopped", timeout=15_000)
    expect(_badge(page, "alpha")).to_have_text("ready")
    assert problems == []


def test_status_page_asks_for_the_admin_key_and_shows_refusals(gateway_factory, open_ui):
    gw = gateway_factory(_fleet("alpha , pinned: true", "beta , ttl: 300", extra=f"admin_keys: [{ADMIN_KEY}]\n"))
    page, problems = open_ui(gw.url)
    key_input = page.get_by_label("Admin key")
    expect(key_input).to_be_visible()

    key_input.fill("not-the-key")
    page.get_by_role("button", name="Use key", exact=True).click()
    expect(page.locator("#key-reason")).to_contain_text("invalid API key")

    key_input.fill(ADMIN_KEY)
    page.get_by_role("button", name="Use key", exact=True).click()
    expect(key_input).to_be_hidden()
    expect(_badge(page, "alpha")).to_have_text("ready", timeout=15_000)
    expect(_badge(page, "beta")).to_have_text("stopped")
    assert page.evaluate("sessionStorage.getItem('homestack.adminKey')") == ADMIN_KEY

    page.get_by_role("button", name="Unload alpha", exact=True).click()  # pinned: the gateway answers 409
    expect(page.locator('#fleet tr[data-model="alpha"] .row-error')).to_contain_text("is pinned")
    expect(_badge(page, "alpha")).to_have_text("ready")

    page.get_by_role("button", name="Load beta", exact=True).click()
    expect(_badge(page, "beta")).to_have_text("ready", timeout=15_000)
    ttl = _cell(page, "beta", "ttl")
    expect(ttl).to_have_text(re.compile(r"^[45]:\d\d$"))  # counting down from 5:00
    before = ttl.inner_text()
    expect(ttl).not_to_have_text(before, timeout=3_000)

    # The browser reports every non-2xx fetch on the console; these refusals are the expected ones.
    expected = ("status of 401", "status of 409")
    assert [p for p in problems if not any(s in p for s in expected)] == []


def test_static_files_types_caching_and_no_escape(gateway_factory):
    gw = gateway_factory(_fleet("alpha"))
    for path, content_type in (("/ui", "text/html"), ("/ui/", "text/html"), ("/ui/app.js", "text/javascript"),
                               ("/ui/app.css", "text/css")):
        resp = httpx.get(gw.url + path)
        assert resp.status_code == 200, path
        assert resp.headers["content-type"].startswith(content_type)
        assert resp.headers["cache-control"] == "no-cache"
    assert "https://" not in httpx.get(gw.url + "/ui/app.js").text  # nothing fetched from outside

    missing = httpx.get(gw.url + "/ui/nope.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert httpx.post(gw.url + "/ui/").status_code == 405

    # http.client sends the path as written (httpx would normalise the dot segments away).
    address = urlsplit(gw.url)
    for path in ("/ui/../ui.py", "/ui/%2e%2e/ui.py", "/ui/..%2fui.py", "/ui/../../../../etc/passwd", "/ui/static/"):
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 404, path
        assert b'"not_found"' in body
