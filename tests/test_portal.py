"""The upload portal in a real headless browser (Debian's chromium driven by Playwright):
sign-in, wrong key, sign-out, escaping, and the layouts at 1280 px and 390 px.
Screenshots of the main states go to test-artifacts/portal/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from tests.helpers import REPO_ROOT, TenantCredentials
from tests.live_server import serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "portal"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_sync = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: `make test` installs Debian's chromium")
    with playwright_sync.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def base_url(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


@pytest.fixture
def page(browser: object, base_url: str) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(base_url)
    yield page
    context.close()


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def sign_in(page: object, key: str) -> None:
    page.fill("#api-key", key)  # type: ignore[attr-defined]
    page.click("#sign-in-form button[type=submit]")  # type: ignore[attr-defined]


def test_sign_in_shows_the_tenant_and_keeps_the_key_out_of_the_url(
    page: object, tenant_a: TenantCredentials
) -> None:
    shot(page, "01-sign-in")
    sign_in(page, tenant_a.key)
    page.wait_for_selector("#app:not([hidden])")  # type: ignore[attr-defined]
    assert page.text_content("#tenant-name") == "tenant-a"  # type: ignore[attr-defined]
    assert tenant_a.key not in page.url  # type: ignore[attr-defined]
    stored = page.evaluate("sessionStorage.getItem('ragkb.apiKey')")  # type: ignore[attr-defined]
    assert stored == tenant_a.key
    shot(page, "02-signed-in")
    page.click("#sign-out")  # type: ignore[attr-defined]
    page.wait_for_selector("#sign-in:not([hidden])")  # type: ignore[attr-defined]
    assert page.evaluate("sessionStorage.getItem('ragkb.apiKey')") is None  # type: ignore[attr-defined]


def test_wrong_key_shows_the_reason_and_stays_signed_out(page: object) -> None:
    sign_in(page, "rk_000000000000_definitely-wrong")
    page.wait_for_selector("#sign-in-error:has-text('invalid API key')")  # type: ignore[attr-defined]
    assert page.is_hidden("#app")  # type: ignore[attr-defined]
    shot(page, "03-wrong-key")


def test_portal_is_usable_at_phone_width(
    browser: object, base_url: str, tenant_a: TenantCredentials
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(base_url)
    sign_in(page, tenant_a.key)
    page.wait_for_selector("#app:not([hidden])")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"page scrolls sideways at 390 px ({width} px wide)"
    shot(page, "04-phone")
    context.close()


def test_portal_sends_security_headers(base_url: str) -> None:
    import httpx

    headers = httpx.get(base_url + "/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
