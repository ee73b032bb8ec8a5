"""A person subscribing to the token plan and cancelling it, in real headless Chromium, against
the running system (gunicorn, worker, emulators, the Stripe sandbox delivering signed webhooks).

Sign up, see the Monthly plan beside the packages, Subscribe (with the keyboard), pay on the
sandbox's hosted page, land on the success page with the allowance (600) credited once; back on
the tokens page the plan shows its renewal date and a Cancel button; Cancel, confirm, and the
page says when the plan ends. Screenshots of each state go to artifacts/screenshots/ and, for
the README, docs/img/ (plan-offer.png, plan-active.png, plan-canceling.png; refreshed with
TOKENBANK_UPDATE_DOC_IMAGES=1).
"""
from __future__ import annotations

import os

import re
import shutil

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from playwright.sync_api import expect

from devstack.processes import wait_until
from tests.e2e.browser_support import ROOT, browser, chromium_missing_reason, new_page, screenshot
from tests.e2e.test_purchase_in_browser import sign_up

pytestmark = pytest.mark.skipif(chromium_missing_reason() is not None, reason=chromium_missing_reason() or "")
DOCS_IMG = ROOT / "docs" / "img"


@pytest.fixture(scope="module")
def chromium():
    with browser() as b:
        yield b


def uid_of(page) -> str:
    return page.evaluate("JSON.parse(localStorage.getItem('tokenbank.auth')).uid")


def allowances(system, uid) -> list[dict]:
    query = (system.deps.store.db.collection("transactions").where(filter=FieldFilter("userId", "==", uid))
             .where(filter=FieldFilter("type", "==", "subscription_allowance")))
    return [s.to_dict() for s in query.stream()]


def mirrored(system, uid) -> dict:
    return (system.deps.store.get_user(uid) or {}).get("subscription") or {}


def picture(page, name: str) -> None:
    """The whole page into artifacts/screenshots/, and the viewport (as a reader sees it) beside it
    — into docs/img/ instead when TOKENBANK_UPDATE_DOC_IMAGES=1 (a test run never rewrites
    tracked files unasked)."""
    path = screenshot(page, name)
    if os.environ.get("TOKENBANK_UPDATE_DOC_IMAGES") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG / f"{name}.png"))
    else:
        page.screenshot(path=str(path.with_name(f"{name}-viewport.png")))


def test_subscribe_pay_get_the_allowance_once_then_cancel_at_period_end(chromium, system):
    page = new_page(chromium)
    sign_up(page, system)
    uid = uid_of(page)
    card = page.locator("li.plan[data-plan='monthly']")
    assert page.locator("li.package").count() == 4 and card.count() == 1
    text = card.inner_text()
    assert "Monthly plan" in text and "600 tokens every month" in text and "$24.99 USD a month" in text
    subscribe = page.locator("#subscribe-monthly")
    expect(subscribe).to_be_enabled()  # once the page knows the user has no plan
    expect(page.locator("#cancel-monthly")).to_be_hidden()
    picture(page, "plan-offer")

    subscribe.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/pay/cs_"))
    page.fill("#email", "subscriber@example.com")
    page.fill("#card-number", "4242 4242 4242 4242")
    page.click("#pay-button")
    page.wait_for_url(re.compile(r".*/purchase/success\?session_id=cs_"))
    page.wait_for_selector("#status[data-status='fulfilled']", timeout=30_000)
    assert page.inner_text("#status") == "Your Monthly plan is active: 600 tokens added. Your balance is 600 tokens."
    assert page.inner_text("#balance") == "600"
    screenshot(page, "plan-success")

    wait_until(lambda: mirrored(system, uid).get("status") == "active", 20, what="subscription mirrored")
    sub = mirrored(system, uid)
    page.goto(f"{system.base_url}/buy-tokens")
    status = page.locator("#plan-status-monthly")
    expect(status).to_have_attribute("data-status", "active")
    expect(status).to_contain_text("Your plan is active. It renews on")
    expect(page.locator("#subscribe-monthly")).to_be_hidden()
    expect(page.locator("#balance")).to_have_text("600")
    page.wait_for_selector("#history-rows tr")
    first = page.locator("#history-rows tr").first
    assert "Monthly plan allowance" in first.inner_text() and "+600" in first.inner_text()
    assert first.get_attribute("data-balance-after") == "600"
    renewal = page.evaluate("s => new Date(s * 1000).toLocaleDateString(undefined, "
                            "{year: 'numeric', month: 'long', day: 'numeric'})", sub["currentPeriodEnd"])
    expect(status).to_contain_text(renewal)
    card.scroll_into_view_if_needed()
    picture(page, "plan-active")

    # Cancel, then confirm, with the keyboard: the question takes the focus, Tab reaches "Yes".
    page.locator("#cancel-monthly").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-monthly")).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "confirm-text-monthly"
    assert renewal in page.inner_text("#confirm-text-monthly")
    screenshot(page, "plan-cancel-confirm")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "confirm-cancel-monthly"
    page.keyboard.press("Enter")
    expect(status).to_have_attribute("data-status", "canceling")
    expect(status).to_contain_text(f"Canceled: your plan ends on {renewal}.")
    expect(page.locator("#cancel-monthly")).to_be_hidden()
    expect(page.locator("#subscribe-monthly")).to_be_hidden()
    picture(page, "plan-canceling")

    # Stripe's customer.subscription.updated reaches the mirror; the page says the same after a reload.
    wait_until(lambda: mirrored(system, uid).get("cancelAtPeriodEnd") is True, 20, what="cancel mirrored")
    page.reload()
    expect(status).to_contain_text(f"Canceled: your plan ends on {renewal}.")
    entries = allowances(system, uid)
    assert [(e["amount"], e["billingReason"]) for e in entries] == [(600, "subscription_create")]
    assert system.deps.store.get_user(uid)["tokenBalance"] == 600


def test_the_plan_fits_a_phone_and_works_with_the_keyboard_alone(chromium, system):
    page = new_page(chromium, phone=True)
    sign_up(page, system)
    expect(page.locator("#subscribe-monthly")).to_be_enabled()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("li.plan").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    screenshot(page, "plan-offer-phone")
    # Tab from the last package's button reaches Subscribe: it is in the page's tab order.
    page.locator("#buy-premium").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "subscribe-monthly"
