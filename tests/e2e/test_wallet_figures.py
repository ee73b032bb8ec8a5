"""The wallet figures on the purchase page, in real headless Chromium against the running system.

A trusted backend funds a user (two expiring promo grants and one grant that never expires) and
places a hold through the service API; the page shows the balance, what is available, what
running jobs have reserved, and the expiring tokens soonest first with their dates in the
browser's locale. Releasing the hold updates the page when the person comes back to it (no
reload) and on reload. The figures land without moving the page (no layout shift), the panel
fits a phone, and nothing trips the Content-Security-Policy.

Screenshots go to artifacts/screenshots/ and, with TOKENBANK_UPDATE_DOC_IMAGES=1, to docs/img/
(wallet-figures.png, wallet-figures-phone.png).
"""
from __future__ import annotations

import os
import re
import secrets
import time

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.browser_support import DESKTOP, PHONE, ROOT, browser, chromium_missing_reason, new_page, screenshot
from tests.e2e.test_purchase_in_browser import sign_up

pytestmark = pytest.mark.skipif(chromium_missing_reason() is not None, reason=chromium_missing_reason() or "")
DOCS_IMG = ROOT / "docs" / "img"
PASSWORD = "correct-horse-battery"  # what sign_up uses
DAY = 86_400

# Layout shifts since the page loaded (buffered), as Chromium's Layout Instability API reports them.
LAYOUT_SHIFT = """() => new Promise((resolve) => {
  let total = 0;
  const seen = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (!e.hadRecentInput) total += e.value;
  });
  seen.observe({ type: "layout-shift", buffered: true });
  setTimeout(() => { seen.disconnect(); resolve(total); }, 300);
})"""
# The date as the page should show it, in the browser's own locale and time zone.
LOCAL_DATE = ("s => new Date(s * 1000).toLocaleString(undefined, "
              "{dateStyle: 'long', timeStyle: 'short'})")


@pytest.fixture(scope="module")
def chromium():
    with browser() as b:
        yield b


def service(system) -> dict:
    return {"X-Service-Key": system.settings.service_api_keys[0]}


def post(system, path: str, body: dict, status: int = 200) -> dict:
    resp = requests.post(f"{system.base_url}{path}", json=body, headers=service(system), timeout=10)
    assert resp.status_code == status, resp.text
    return resp.json()


def grant(system, uid: str, amount: int, **extra) -> dict:
    return post(system, "/api/tokens/grant", {"userId": uid, "amount": amount, "reason": "wallet e2e",
                                              "idempotencyKey": f"grant-{secrets.token_hex(8)}",
                                              "createAccount": True, **extra})


def uid_of(page) -> str:
    return page.evaluate("JSON.parse(localStorage.getItem('tokenbank.auth')).uid")


def watch_csp(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    return errors


def picture(page, name: str) -> None:
    """The whole page into artifacts/screenshots/; the viewport, as a reader sees it, into docs/img/
    when TOKENBANK_UPDATE_DOC_IMAGES=1 (a test run never rewrites tracked files unasked)."""
    path = screenshot(page, name)
    target = DOCS_IMG / f"{name}.png" if os.environ.get("TOKENBANK_UPDATE_DOC_IMAGES") == "1" \
        else path.with_name(f"{name}-viewport.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target))


def expiring(page) -> list[tuple[int, int, str]]:
    items = page.locator("#expiring li")
    return [(int(items.nth(i).get_attribute("data-amount")), int(items.nth(i).get_attribute("data-expires-at")),
             items.nth(i).inner_text()) for i in range(items.count())]


def expect_figures(page, *, balance: str, available: str, held: str | None) -> None:
    expect(page.locator("#wallet")).not_to_have_attribute("aria-busy", "true")
    expect(page.locator("#balance")).to_have_text(balance)
    expect(page.locator("#wallet-balance")).to_have_text(balance)
    expect(page.locator("#available")).to_have_text(available)
    if held is None:
        expect(page.locator("#figure-held")).to_be_hidden()
    else:
        expect(page.locator("#figure-held")).to_be_visible()
        expect(page.locator("#held")).to_have_text(held)


def test_balance_available_reserved_and_expiring_then_the_hold_is_released(chromium, system):
    page = new_page(chromium)
    csp_errors = watch_csp(page)
    email = sign_up(page, system)
    uid = uid_of(page)
    # A new account: the panel shows zero, nothing reserved, nothing expiring.
    expect_figures(page, balance="0", available="0", held=None)
    expect(page.locator("#expiring-box")).to_be_hidden()

    now = int(time.time())
    later, sooner = now + 9 * DAY + 1800, now + 2 * DAY + 3600
    grant(system, uid, 20, source="promo", expiresAt=later)   # granted first, expires last
    grant(system, uid, 30, source="promo", expiresAt=sooner)
    grant(system, uid, 1200)                                    # never expires
    hold = post(system, "/api/tokens/holds", {"userId": uid, "amount": 70, "idempotencyKey": f"hold-{uid}",
                                              "ttlSeconds": 900}, 201)
    assert hold["amount"] == 70 and hold["available"] == 1250 - 70
    answer = requests.get(f"{system.base_url}/api/tokens/balance", timeout=10,
                          headers={"Authorization": "Bearer " + page.evaluate(
                              "JSON.parse(localStorage.getItem('tokenbank.auth')).idToken")}).json()
    assert (answer["tokenBalance"], answer["available"], answer["held"]) == (1250, 1180, 70)
    assert answer["expiring"] == [{"amount": 30, "expiresAt": sooner}, {"amount": 20, "expiresAt": later}]

    page.reload()
    page.wait_for_selector("#shop:not([hidden])")
    expect_figures(page, balance="1,250", available="1,180", held="70")
    expect(page.locator("#expiring-box")).to_be_visible()
    # Accessible names: the figures are a description list, the expiring tokens a named list.
    dts = page.locator("#wallet dt")
    assert [dts.nth(i).inner_text() for i in range(dts.count())] == ["Balance", "Available",
                                                                      "Reserved by running jobs"]
    assert page.get_by_role("region", name="Your tokens").count() == 1
    listed = page.get_by_role("list", name="Expiring soon")
    expect(listed.get_by_role("listitem")).to_have_count(2)
    rows = expiring(page)
    assert [(amount, at) for amount, at, _ in rows] == [(30, sooner), (20, later)]  # soonest first
    for amount, at, text in rows:
        shown = page.evaluate(LOCAL_DATE, at)
        assert text == f"{amount} tokens expire on {shown}", text
        assert re.search(r"[A-Z][a-z]+ \d{1,2}, \d{4}", shown), shown  # en-US: "May 3, 2026"
    iso = page.locator("#expiring li time").first.get_attribute("datetime")
    assert iso and iso.startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(sooner)))
    # The figures were in place when the shop appeared: nothing moved as they landed.
    assert page.evaluate(LAYOUT_SHIFT) < 0.01
    assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP["width"]
    picture(page, "wallet-figures")

    # The same account on a phone, in a British English browser: day-month dates, no sideways scroll.
    context = chromium.new_context(viewport=PHONE, locale="en-GB", timezone_id="Europe/London", is_mobile=True,
                                   has_touch=True, device_scale_factor=2, service_workers="block")
    context.set_default_timeout(10_000)
    phone = context.new_page()
    phone_csp = watch_csp(phone)
    phone.goto(f"{system.base_url}/buy-tokens")
    phone.fill("#email", email)
    phone.fill("#password", PASSWORD)
    phone.click("#signin-button")
    phone.wait_for_selector("#shop:not([hidden])")
    expect_figures(phone, balance="1,250", available="1,180", held="70")
    phone_rows = expiring(phone)
    assert [(a, t) for a, t, _ in phone_rows] == [(30, sooner), (20, later)]
    for amount, at, text in phone_rows:
        shown = phone.evaluate(LOCAL_DATE, at)
        assert text == f"{amount} tokens expire on {shown}"
        assert re.match(r"\d{1,2} [A-Z][a-z]+ \d{4}", shown), shown  # en-GB: "3 May 2026"
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for selector in ("#wallet", "#figure-held", "#expiring-box"):
        box = phone.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], selector
    assert phone.evaluate(LAYOUT_SHIFT) < 0.01
    picture(phone, "wallet-figures-phone")
    context.close()

    # The job ends early: its hold is released. The open page refreshes its figures when the person
    # comes back to it (visibilitychange), without a reload, and without moving the page.
    released = post(system, f"/api/tokens/holds/{hold['holdId']}/release", {"userId": uid})
    assert released["status"] == "released" and released["available"] == 1250
    packages_at = page.locator("ul.packages").bounding_box()
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect_figures(page, balance="1,250", available="1,250", held=None)
    assert page.locator("ul.packages").bounding_box() == packages_at
    page.reload()
    page.wait_for_selector("#shop:not([hidden])")
    expect_figures(page, balance="1,250", available="1,250", held=None)
    assert [(a, t) for a, t, _ in expiring(page)] == [(30, sooner), (20, later)]
    screenshot(page, "wallet-figures-released")
    assert csp_errors == [] and phone_csp == []


def test_a_failed_balance_says_so_in_the_panel(chromium, system):
    page = new_page(chromium)
    sign_up(page, system)
    page.route("**/api/tokens/balance", lambda route: route.fulfill(status=503, body="{}",
                                                                    content_type="application/json"))
    page.reload()
    page.wait_for_selector("#shop:not([hidden])")
    expect(page.locator("#wallet-error")).to_have_text("Your balance could not be loaded. Please reload the page.")
    expect(page.locator("#wallet")).not_to_have_attribute("aria-busy", "true")
    expect(page.locator("#figure-held")).to_be_hidden()
    expect(page.locator("#expiring-box")).to_be_hidden()
