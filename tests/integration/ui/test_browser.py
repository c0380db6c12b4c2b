"""The newcomer path in a real browser (Chromium through Playwright), with screenshots.

Open the console, log in, write a segment with an error and see it inline, fix it, see the
preview count, save it, open a profile. Screenshots go to ``test-artifacts/console/``.
Skips only when ``/usr/bin/chromium`` or the ``playwright`` package is missing (the browser is
Debian's, never one downloaded by ``playwright install``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.integration.ui.conftest import Served

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "console"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip

if not CHROMIUM.exists():
    pytest.skip(
        f"no browser: {CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing (pip install playwright)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    refused_login = "the server responded with a status of 401"  # the wrong token, on purpose
    yield page
    context.close()
    expected = [refused_login, *getattr(page, "expected_errors", [])]
    errors = [e for e in errors if not any(x in e for x in expected)]
    assert not errors, f"the page logged errors: {errors}"


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def test_newcomer_path(served: Served, page: Any) -> None:
    expect = sync_api.expect
    page.goto(f"{served.url}/console")
    expect(page).to_have_url(f"{served.url}/console/login?next=%2Fconsole")
    shot(page, "01-login")
    page.fill('input[name="token"]', "sft_wrong_token")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".error")).to_contain_text("not valid")
    page.fill('input[name="token"]', served.tokens["editor"])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{served.url}/console")
    expect(page.locator("#recent")).to_contain_text("Order Completed")
    shot(page, "02-overview")

    page.click("nav >> text=Segments")
    page.get_by_role("link", name="New segment").click()
    page.fill('input[name="name"]', "repeat_buyers")
    page.locator("#rule").fill('did "Order Completed" at least 2 times in last 30 parsecs')
    expect(page.locator("#diagnostics li.error")).to_contain_text("unknown time unit 'parsecs'")
    expect(page.locator("#rule-highlight .err")).to_have_text("parsecs")
    expect(page.locator("#rule-highlight .k").first).to_have_text("did")
    shot(page, "03-segment-error")

    page.locator("#rule").fill('did "Order Completed" at least 2 times in last 30 days')
    expect(page.locator("#preview-count")).to_have_text("1")
    expect(page.locator("#preview .sample a")).to_have_text("ada")  # was: her p_... id
    expect(page.locator("#diagnostics li")).to_have_count(0)
    shot(page, "04-segment-preview")
    page.click("#save")
    expect(page).to_have_url(f"{served.url}/console/segments/repeat_buyers")
    served.settle()  # the processor picks the new segment up (the watcher is not running here)
    page.reload()
    expect(page.locator(".members")).to_contain_text("ada")
    shot(page, "05-segment-saved")

    page.click("nav >> text=Profiles")
    page.fill('input[name="q"]', "ada@example.com")
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#memberships")).to_contain_text("repeat_buyers")
    expect(page.locator(".timeline")).to_contain_text("Order Completed")
    expect(page.locator("#scores")).to_contain_text("orders_90d")
    expect(page.locator("#membership-history")).to_contain_text("pro_users")
    shot(page, "06-profile")


def test_operator_pages(served: Served, page: Any) -> None:
    expect = sync_api.expect
    page.goto(f"{served.url}/console/login")
    page.fill('input[name="token"]', served.tokens["admin"])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{served.url}/console")
    served.send(
        [{"type": "track", "userId": "linus", "event": "Live Event", "messageId": "live-1"}]
    )
    expect(page.locator("#recent")).to_contain_text("Live Event", timeout=10_000)  # no reload
    page.click("nav >> text=Clusters")
    expect(page.locator(".cluster").first).to_contain_text("High spend")
    expect(page.locator("svg.scatter circle")).to_have_count(5)
    shot(page, "07-clusters")
    page.click("nav >> text=Models")
    expect(page.locator("main")).to_contain_text("run-1")
    expect(page.locator("figure.calibration svg circle")).to_have_count(3)
    shot(page, "08-models")
    page.click("nav >> text=Destinations")
    page.get_by_role("link", name="crm").click()
    expect(page.locator("main")).to_contain_text("disk full at the CRM")
    shot(page, "09-destination")
    page.click("nav >> text=Sources")
    expect(page.locator("main")).to_contain_text("web")
    shot(page, "10-sources")


def test_tokens_page_and_the_api_docs(served: Served, page: Any) -> None:
    expect = sync_api.expect
    page.goto(f"{served.url}/console/login")
    page.fill('input[name="token"]', served.tokens["admin"])
    page.get_by_role("button", name="Log in").click()
    page.click("nav >> text=Tokens")
    page.select_option('select[name="role"]', "read")
    page.fill('input[name="name"]', "api-docs")
    page.click("#create-token")
    secret = page.locator("#token-secret").inner_text()
    assert secret.startswith("sft_")
    shot(page, "11-tokens")

    page.goto(f"{served.url}/api/v1/docs")  # offline: the page's own script and stylesheet
    page.fill("#token", secret)
    op = page.locator("#get_segments")
    op.locator("summary").click()
    op.get_by_role("button", name="Send").click()
    expect(op.locator(".answer")).to_contain_text("200 OK")
    expect(op.locator(".answer")).to_contain_text("pro_users")
    check = page.locator("#post_segments_check")
    check.locator("summary").click()
    check.get_by_role("button", name="Send").click()  # the example rule has an error
    expect(check.locator(".answer")).to_contain_text("parsecs")
    check.scroll_into_view_if_needed()
    shot(page, "12-api-docs", full_page=False)
    page.expected_errors = ["the server responded with a status of 403"]  # on purpose, below
    refused = page.locator("#post_tokens")  # a read token may not make tokens
    refused.locator("summary").click()
    refused.get_by_role("button", name="Send").click()
    expect(refused.locator(".answer")).to_contain_text("403")
    expect(refused.locator(".answer")).to_contain_text('"code": "forbidden"')


OVERFLOWING = """() => [...document.querySelectorAll('.card')].flatMap(card => {
  const edge = card.getBoundingClientRect();
  const out = [...card.querySelectorAll('*')].filter(e => {
    const box = e.getBoundingClientRect();
    return box.width > 0 && (box.right > edge.right + 0.5 || box.left < edge.left - 0.5);
  }).map(e => `${card.querySelector('h2').textContent}: <${e.tagName.toLowerCase()}> ${e.textContent.slice(0, 40)}`);
  return card.scrollWidth > card.clientWidth + 0.5 ? [...out, 'card scrolls'] : out;
})"""


def test_profile_cards_hold_long_identifiers_and_reasons(served: Served, page: Any) -> None:
    from tests.integration.ui.conftest import seed_long_profile

    profile_id = seed_long_profile(served)
    page.goto(f"{served.url}/console/login")
    page.fill('input[name="token"]', served.tokens["read"])
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{served.url}/console/profiles/{profile_id}")
    sync_api.expect(page.locator("#scores")).to_contain_text("days_since_last_")
    shot(page, "13-profile-long-values")
    # was: identity values, their first-seen times and score reasons ran past the cards
    assert page.evaluate(OVERFLOWING) == []
