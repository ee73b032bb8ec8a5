"""A person buying tokens in real headless Chromium, against the running system.

Sign in (Firebase Auth emulator), see the four packages, buy Starter, pay on the Stripe
sandbox's hosted page, land on the success page with balance 50; a declined card; cancel;
the sixth checkout within an hour refused with a clear message; an abandoned checkout
that expires freeing its place. A screenshot of each final page lands in
artifacts/screenshots/.
"""
from __future__ import annotations

import re
import secrets

import pytest
import requests
from playwright.sync_api import expect

from devstack.processes import wait_until
from tests.e2e.browser_support import browser, chromium_missing_reason, new_page, screenshot

pytestmark = pytest.mark.skipif(chromium_missing_reason() is not None, reason=chromium_missing_reason() or "")

SANDBOX_KEY = {"Authorization": "Bearer sk_test_tokenbank_local_sandbox"}


@pytest.fixture(scope="module")
def chromium():
    with browser() as b:
        yield b


def sign_up(page, system) -> str:
    email = f"buyer-{secrets.token_hex(4)}@example.com"
    page.goto(f"{system.base_url}/buy-tokens")
    page.fill("#email", email)
    page.fill("#password", "correct-horse-battery")
    page.click("#signup-button")
    page.wait_for_selector("#shop:not([hidden])")
    expect(page.locator("#balance")).to_have_text("0")
    return email


def checkout_ids(page) -> list[str]:
    return page.evaluate("""async () => {
        const token = JSON.parse(localStorage.getItem('tokenbank.auth')).idToken;
        const ids = [];
        for (let i = 0; i < 5; i++) {
          const r = await fetch('/api/checkout', {method: 'POST', headers: {'Content-Type': 'application/json',
            Authorization: `Bearer ${token}`}, body: JSON.stringify({packageId: 'starter'})});
          ids.push((await r.json()).sessionId);
        }
        return ids;
    }""")


def test_buy_starter_and_see_the_balance(chromium, system):
    page = new_page(chromium)
    sign_up(page, system)
    packages = page.locator("li.package")
    assert packages.count() == 4
    assert [packages.nth(i).get_attribute("data-package") for i in range(4)] == ["starter", "basic", "pro", "premium"]
    assert "$4.99" in packages.nth(0).inner_text() and "50" in packages.nth(0).inner_text()
    screenshot(page, "buy-tokens-signed-in")
    page.click("#buy-starter")
    page.wait_for_url(re.compile(r".*/pay/cs_"))
    page.fill("#email", "buyer@example.com")
    page.fill("#card-number", "4242 4242 4242 4242")
    page.click("#pay-button")
    page.wait_for_url(re.compile(r".*/purchase/success\?session_id=cs_"))
    page.wait_for_selector("#status[data-status='fulfilled']", timeout=20_000)
    assert page.inner_text("#status") == "50 tokens added. Your balance is 50 tokens."
    assert page.inner_text("#balance") == "50"
    screenshot(page, "purchase-success")
    page.goto(f"{system.base_url}/buy-tokens")
    expect(page.locator("#balance")).to_have_text("50")
    page.wait_for_selector("#history-rows tr")
    first = page.locator("#history-rows tr").first
    assert "Purchase: Starter package" in first.inner_text() and "+50" in first.inner_text()
    assert first.get_attribute("data-balance-after") == "50"


def test_a_declined_card_shows_the_error_and_credits_nothing(chromium, system):
    page = new_page(chromium)
    sign_up(page, system)
    page.click("#buy-basic")
    page.wait_for_url(re.compile(r".*/pay/cs_"))
    page.fill("#email", "declined@example.com")
    page.fill("#card-number", "4000 0000 0000 0002")
    page.click("#pay-button")
    page.wait_for_selector("#error")
    assert "Your card was declined." in page.inner_text("#error")
    screenshot(page, "checkout-declined")
    page.goto(f"{system.base_url}/buy-tokens")
    expect(page.locator("#balance")).to_have_text("0")


def test_cancel_returns_to_a_page_that_says_nothing_was_charged(chromium, system):
    page = new_page(chromium)
    sign_up(page, system)
    page.click("#buy-pro")
    page.wait_for_url(re.compile(r".*/pay/cs_"))
    page.click("#cancel-link")
    page.wait_for_url(re.compile(r".*/purchase/cancel"))
    assert page.inner_text("#title") == "Checkout cancelled"
    assert "Nothing was charged" in page.inner_text("#message")
    screenshot(page, "checkout-cancelled")


def test_sixth_checkout_in_an_hour_is_refused_and_an_expired_one_frees_its_place(chromium, system):
    page = new_page(chromium)
    sign_up(page, system)
    ids = checkout_ids(page)
    assert len(set(ids)) == 5 and all(i and i.startswith("cs_") for i in ids)
    page.click("#buy-starter")
    page.wait_for_selector("#buy-error:not([hidden])")
    message = page.inner_text("#buy-error")
    assert "limit of 5 purchases per hour" in message and "try again in" in message
    assert "/buy-tokens" in page.url
    screenshot(page, "checkout-rate-limited")
    # Abandon one: Stripe expires it and tells tokenbank by webhook; its place is free again.
    resp = requests.post(f"{system.sandbox_url}/v1/checkout/sessions/{ids[0]}/expire", headers=SANDBOX_KEY, timeout=5)
    assert resp.status_code == 200
    purchases = system.deps.store
    wait_until(lambda: (purchases.get_purchase(ids[0]) or {}).get("status") == "expired", 20, what="expiry")
    page.click("#buy-starter")
    page.wait_for_url(re.compile(r".*/pay/cs_"))
    screenshot(page, "checkout-after-expiry")


def test_the_purchase_page_fits_a_phone(chromium, system):
    page = new_page(chromium, phone=True)
    sign_up(page, system)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    assert page.locator("#buy-premium").is_visible()
    screenshot(page, "buy-tokens-phone")


@pytest.mark.parametrize("succeeds", [True, False], ids=["settles", "fails"])
def test_a_delayed_payment_shows_processing_then_the_outcome(chromium, system, succeeds):
    page = new_page(chromium)
    sign_up(page, system)
    page.click("#buy-starter")
    page.wait_for_url(re.compile(r".*/pay/cs_"))
    session_id = page.url.rsplit("/", 1)[1]
    page.fill("#email", "slow@example.com")
    page.click("#delayed-button")
    page.wait_for_url(re.compile(r".*/purchase/success\?session_id=cs_"))
    page.wait_for_selector("#status[data-status='pending']", timeout=20_000)
    assert "processing" in page.inner_text("#status")
    resp = requests.post(f"{system.sandbox_url}/_sandbox/checkout/{session_id}/async_result",
                         json={"succeeded": succeeds}, timeout=5)
    assert resp.status_code == 200, resp.text
    if succeeds:
        page.wait_for_selector("#status[data-status='fulfilled']", timeout=20_000)
        assert page.inner_text("#status") == "50 tokens added. Your balance is 50 tokens."
    else:
        page.wait_for_selector("#status[data-status='failed']", timeout=20_000)
        assert "Nothing was charged" in page.inner_text("#status")
        page.goto(f"{system.base_url}/buy-tokens")
        expect(page.locator("#balance")).to_have_text("0")
    screenshot(page, f"delayed-payment-{'settled' if succeeds else 'failed'}")
