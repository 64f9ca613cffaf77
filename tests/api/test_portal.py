"""The upload portal in a real headless browser (Debian's chromium driven by Playwright):
sign-in, wrong key, sign-out, escaping, and the layouts at 1280 px and 390 px.
Screenshots of the main states go to test-artifacts/portal/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from tests.support.helpers import REPO_ROOT, TenantCredentials
from tests.support.live_server import serve

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


def _upload(page: object, paths: list[Path]) -> None:
    page.set_input_files("#file-input", [str(p) for p in paths])  # type: ignore[attr-defined]


def test_multi_file_upload_reaches_ready_and_a_bad_file_shows_its_reason(
    page: object, tenant_a: TenantCredentials, tmp_path: Path
) -> None:
    good_1 = tmp_path / "travel-policy.md"
    good_1.write_text("# Travel policy\n\nTrain travel is first class for trips over four hours.\n")
    good_2 = tmp_path / "<img src=x onerror=window.__xss=1>.txt"
    good_2.write_text("The office closes at 18:00 on Fridays.\n")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    sign_in(page, tenant_a.key)
    page.wait_for_selector("#app:not([hidden])")  # type: ignore[attr-defined]
    _upload(page, [good_1, good_2, broken])
    page.wait_for_selector(  # type: ignore[attr-defined]
        "#uploads li:has-text('travel-policy.md') .state.ready", timeout=120_000
    )
    page.wait_for_selector(  # type: ignore[attr-defined]
        "#uploads li:has-text('onerror') .state.ready", timeout=120_000
    )
    failed = page.wait_for_selector(  # type: ignore[attr-defined]
        "#uploads li:has-text('broken.pdf') .state.failed", timeout=120_000
    )
    assert "failed:" in failed.text_content() and len(failed.text_content()) > 10
    # The hostile filename is shown as text, never run as markup.
    assert page.evaluate("window.__xss === undefined")  # type: ignore[attr-defined]
    page.wait_for_selector("#docs tbody tr:has-text('travel-policy.md')")  # type: ignore[attr-defined]
    assert page.locator("#docs td.file", has_text="<img src=x").count() == 1  # type: ignore[attr-defined]
    shot(page, "05-uploaded")


def test_ask_a_question_and_open_a_citation(
    page: object, base_url: str, tenant_a: TenantCredentials
) -> None:
    import time

    import httpx

    files = {
        "files": (
            "remote-work.md",
            b"# Remote work\n\nEmployees may work remotely up "
            b"to three days per week with manager approval.\n",
            "text/markdown",
        )
    }
    r = httpx.post(f"{base_url}/v1/documents", files=files, headers=tenant_a.headers)
    assert r.status_code == 202, r.text
    doc_id = r.json()["documents"][0]["id"]
    deadline = time.monotonic() + 120
    while (
        httpx.get(f"{base_url}/v1/documents/{doc_id}", headers=tenant_a.headers).json()["status"]
        != "ready"
    ):
        assert time.monotonic() < deadline, "document did not become ready"
        time.sleep(0.5)

    sign_in(page, tenant_a.key)
    page.wait_for_selector("#app:not([hidden])")  # type: ignore[attr-defined]
    page.fill("#question", "How many days per week may employees work remotely?")  # type: ignore[attr-defined]
    page.click("#ask-button")  # type: ignore[attr-defined]
    chip = page.wait_for_selector("#citations .chip", timeout=60_000)  # type: ignore[attr-defined]
    assert "three days" in page.text_content("#answer")  # type: ignore[attr-defined]
    # The first statement stands out, with a button that opens the page it cites.
    page.wait_for_selector("#answer .answer-lead")  # type: ignore[attr-defined]
    assert "three days" in page.text_content("#answer .answer-lead")  # type: ignore[attr-defined]
    assert page.locator("#answer .lead-open").count() == 1  # type: ignore[attr-defined]
    assert "remote-work.md" in chip.text_content()
    chip.click()
    page.wait_for_selector("#citation-detail:not([hidden])")  # type: ignore[attr-defined]
    assert page.text_content("#cd-file") == "remote-work.md"  # type: ignore[attr-defined]
    assert "three days" in page.text_content("#cd-quote")  # type: ignore[attr-defined]
    shot(page, "06-answer-with-citation")
    with page.expect_popup() as popup_info:  # type: ignore[attr-defined]
        page.click("#cd-open")  # type: ignore[attr-defined]
    popup = popup_info.value
    popup.wait_for_url(re.compile(r"^blob:"))
    assert popup.url.startswith("blob:")
    assert tenant_a.key not in popup.url
    # The feedback icons are drawn by the page itself (inline SVG), not by a font that the
    # machine may not have: each has a size of its own.
    for button in ("#thumb-up", "#thumb-down"):
        box = page.locator(f"{button} svg").bounding_box()  # type: ignore[attr-defined]
        assert box is not None and box["width"] > 4 and box["height"] > 4, button
    page.click("#thumb-up")  # type: ignore[attr-defined]
    page.wait_for_selector("#feedback-status:has-text('Thanks')")  # type: ignore[attr-defined]
    shot(page, "07-feedback-given")


def test_upload_with_metadata_and_ask_within_an_organisation(
    page: object, tenant_a: TenantCredentials, tmp_path: Path
) -> None:
    memo = tmp_path / "remote-memo.md"
    memo.write_text("# Remote work\n\nEmployees may work remotely up to two days per week.\n")
    sign_in(page, tenant_a.key)
    page.wait_for_selector("#app:not([hidden])")  # type: ignore[attr-defined]
    page.fill("#upload-meta", "key without value")  # type: ignore[attr-defined]
    _upload(page, [memo])
    failed = page.wait_for_selector("#uploads li .state.failed")  # type: ignore[attr-defined]
    assert "key=value" in failed.text_content()
    page.fill("#upload-meta", "organisation=Globex Corporation\ndepartment=legal")  # type: ignore[attr-defined]
    _upload(page, [memo])
    page.wait_for_selector("#uploads li .state.ready", timeout=120_000)  # type: ignore[attr-defined]
    row = page.wait_for_selector("#docs tbody tr:has-text('remote-memo.md')")  # type: ignore[attr-defined]
    assert "Globex Corporation" in row.text_content()
    question = "How many days per week may employees work remotely?"
    page.fill("#question", question)  # type: ignore[attr-defined]
    page.fill("#ask-organisation", "Globex")  # type: ignore[attr-defined]
    page.click("#ask-button")  # type: ignore[attr-defined]
    chip = page.wait_for_selector("#citations .chip", timeout=60_000)  # type: ignore[attr-defined]
    assert "remote-memo.md" in chip.text_content()
    page.fill("#ask-organisation", "Initech")  # type: ignore[attr-defined]
    page.press("#ask-organisation", "Enter")  # type: ignore[attr-defined]
    page.wait_for_selector("#refused-note:not([hidden])", timeout=60_000)  # type: ignore[attr-defined]
    assert page.locator("#citations .chip").count() == 0  # type: ignore[attr-defined]
    shot(page, "08-metadata-and-filter")
