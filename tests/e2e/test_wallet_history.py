"""The wallet on /buy-tokens in real headless Chromium against the running system (gunicorn, worker,
emulators, the Stripe sandbox delivering signed webhooks): the history with its running balance,
paged with the keyboard; the CSV download of the whole history (every page, formulas neutralised);
a purchase's Stripe receipt (and nobody else's); the notices of an account frozen by a dispute and
of one in debt after a refund of spent tokens, each state made by the sandbox's real Stripe flows;
and cancelling the plan in Stripe's customer portal, back to the page that then says when it ends.

Screenshots go to artifacts/screenshots/ and, with TOKENBANK_UPDATE_DOC_IMAGES=1, to docs/img/
(wallet-history, wallet-history-phone, wallet-frozen, wallet-debt, wallet-portal, wallet-portal-returned).
"""
from __future__ import annotations

import csv
import io
import re
import secrets

import pytest
import requests
from playwright.sync_api import expect

from devstack.processes import wait_until
from tests.e2e.browser_support import PHONE, browser, chromium_missing_reason, new_page, screenshot
from tests.e2e.test_purchase_in_browser import SANDBOX_KEY, sign_up
from tests.e2e.test_wallet_figures import grant, picture, uid_of, watch_csp

pytestmark = pytest.mark.skipif(chromium_missing_reason() is not None, reason=chromium_missing_reason() or "")


@pytest.fixture(scope="module")
def chromium():
    with browser() as b:
        yield b


def token_of(page) -> str:
    return page.evaluate("JSON.parse(localStorage.getItem('tokenbank.auth')).idToken")


def as_user(page) -> dict:
    return {"Authorization": f"Bearer {token_of(page)}"}


def balance(system, page) -> dict:
    resp = requests.get(f"{system.base_url}/api/tokens/balance", headers=as_user(page), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def spend(system, page, amount: int, reason: str, status: int = 200) -> dict:
    resp = requests.post(f"{system.base_url}/api/tokens/spend", headers=as_user(page), timeout=10,
                         json={"amount": amount, "reason": reason, "idempotencyKey": secrets.token_hex(8)})
    assert resp.status_code == status, resp.text
    return resp.json()


def bought(system, page, item: dict, card: str = "4242424242424242") -> str:
    """A checkout started as the page starts it, paid through the sandbox's hosted-page control."""
    resp = requests.post(f"{system.base_url}/api/checkout", json=item, timeout=30,
                         headers={**as_user(page), "Idempotency-Key": secrets.token_hex(8)})
    assert resp.status_code == 200, resp.text
    session_id = resp.json()["sessionId"]
    paid = requests.post(f"{system.sandbox_url}/_sandbox/checkout/{session_id}/pay", timeout=30,
                         json={"card": card, "email": "wallet@example.com"})
    assert paid.status_code == 200, paid.text
    return session_id


def session_of(system, session_id: str) -> dict:
    return requests.get(f"{system.sandbox_url}/v1/checkout/sessions/{session_id}", headers=SANDBOX_KEY,
                        timeout=10).json()


def rows(page) -> list[dict]:
    return page.eval_on_selector_all("#history-rows tr", """trs => trs.map(tr => ({
        id: tr.id, type: tr.dataset.type, amount: Number(tr.dataset.amount),
        after: Number(tr.dataset.balanceAfter), text: tr.innerText}))""")


def show_wallet(page) -> None:
    page.reload()
    page.wait_for_selector("#shop:not([hidden])")
    expect(page.locator("#history")).not_to_have_attribute("aria-busy", "true")


def test_history_pages_with_the_running_balance_and_the_csv_has_it_all(chromium, system):
    page = new_page(chromium)
    csp_errors = watch_csp(page)
    email = sign_up(page, system)
    uid = uid_of(page)
    expect(page.locator("#history-empty")).to_be_visible()
    for i in range(15):
        grant(system, uid, 10 + i)
    for i, reason in enumerate(["=HYPERLINK(\"http://evil.test\",\"x\")", "-2+3", "lunch, \"quoted\"",
                                "@risky", "render job 1", "render job 2", "render job 3", "render job 4"]):
        spend(system, page, 3 + i, reason)
    expected_balance = sum(10 + i for i in range(15)) - sum(3 + i for i in range(8))
    api_entries, cursor = [], None
    while True:
        query = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        got = requests.get(f"{system.base_url}/api/tokens/transactions", params=query, headers=as_user(page),
                           timeout=10).json()
        api_entries += got["entries"]
        cursor = got["nextCursor"]
        if not cursor:
            break
    assert len(api_entries) == 23 and api_entries[0]["balanceAfter"] == expected_balance

    show_wallet(page)
    shown = rows(page)
    assert len(shown) == 10 and shown[0]["after"] == expected_balance
    assert shown[0]["type"] == "spend" and "Spent" in shown[0]["text"] and "render job 4" in shown[0]["text"]
    assert "\u221210" in shown[0]["text"]  # −10, with a real minus sign
    more = page.locator("#history-more")
    expect(more).to_be_visible()
    # Paging with the keyboard: the focus lands on the first older entry.
    more.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#history-rows tr")).to_have_count(20)
    assert page.evaluate("document.activeElement.id") == rows(page)[10]["id"]
    more.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#history-rows tr")).to_have_count(23)
    expect(more).to_be_hidden()
    everything = rows(page)
    assert [r["id"] for r in everything] == [f"entry-{e['id']}" for e in api_entries]
    for newer, older in zip(everything, everything[1:]):  # each balance = the one before it + the change
        assert newer["after"] == older["after"] + newer["amount"], (newer, older)
    assert everything[-1]["after"] == everything[-1]["amount"] == 10
    assert "Tokens granted" in everything[-1]["text"]
    header = page.locator("#history-table th")
    assert [header.nth(i).inner_text() for i in range(4)] == ["Date", "What", "Change", "Balance after"]
    page.locator("#history").evaluate("el => el.scrollIntoView()")
    picture(page, "wallet-history")

    # The CSV: every page of the ledger, newest first, the same figures, formulas neutralised.
    with page.expect_download() as download:
        page.locator("#download-csv").click()
    saved = download.value
    assert re.fullmatch(r"tokenbank-history-\d{4}-\d{2}-\d{2}\.csv", saved.suggested_filename)
    text = open(saved.path(), encoding="utf-8-sig", newline="").read()
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["date", "type", "description", "amount", "balance_after", "reason", "reference", "entry_id"]
    assert [(r[7], int(r[3]), int(r[4])) for r in table[1:]] == [
        (e["id"], e["amount"], e["balanceAfter"]) for e in api_entries]
    reasons = [r[5] for r in table[1:] if r[1] == "spend"]
    assert reasons[-4:] == ["'@risky", "lunch, \"quoted\"", "'-2+3", "'=HYPERLINK(\"http://evil.test\",\"x\")"]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", r[0]) for r in table[1:])
    expect(page.locator("#history-error")).to_be_hidden()

    # The same history on a phone: no sideways scrolling, the table inside the screen.
    phone = new_page(chromium, phone=True)
    phone.goto(f"{system.base_url}/buy-tokens")
    phone.fill("#email", email)
    phone.fill("#password", "correct-horse-battery")
    phone.click("#signin-button")
    phone.wait_for_selector("#history-rows tr")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = phone.locator("#history-table").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    # Restyled as one card per entry, it is still a table to assistive technology.
    assert phone.get_by_role("table", name="Your token history, newest first").get_by_role("row").count() == 11
    phone.locator("#history").evaluate("el => el.scrollIntoView()")
    picture(phone, "wallet-history-phone")
    phone.context.close()
    assert csp_errors == []


def test_a_purchase_links_its_stripe_receipt_and_nobody_elses(chromium, system):
    page = new_page(chromium)
    csp_errors = watch_csp(page)
    sign_up(page, system)
    session_id = bought(system, page, {"packageId": "starter"})
    wait_until(lambda: balance(system, page)["tokenBalance"] == 50, 30, what="the purchase credited")
    show_wallet(page)
    receipt = page.get_by_role("button", name="Receipt for Purchase: Starter package")
    expect(receipt).to_be_visible()
    with page.context.expect_page() as opened:
        receipt.focus()
        page.keyboard.press("Enter")
    tab = opened.value
    tab.wait_for_load_state()
    charge = session_of(system, session_id)
    assert tab.url.startswith(f"{system.sandbox_url}/receipts/payment/")
    expect(tab.locator("#receipt-amount")).to_have_text("4.99 USD")
    link = page.get_by_role("link", name="Receipt for Purchase: Starter package")
    expect(link).to_have_attribute("href", tab.url)  # the button became a plain link to the same receipt
    assert page.evaluate("document.activeElement.tagName") == "A"
    tab.close()
    assert charge["payment_status"] == "paid"

    # Another person asking for this purchase's receipt gets 404, and no Stripe address.
    other = new_page(chromium)
    sign_up(other, system)
    resp = requests.get(f"{system.base_url}/api/purchases/{session_id}/receipt", headers=as_user(other), timeout=10)
    assert resp.status_code == 404 and "receipts" not in resp.text
    other.context.close()
    assert csp_errors == []


def test_a_dispute_freezes_spending_and_the_page_says_what_happens_next(chromium, system):
    page = new_page(chromium)
    csp_errors = watch_csp(page)
    sign_up(page, system)
    bought(system, page, {"packageId": "starter"}, card="4000000000000259")  # paid, then disputed
    wait_until(lambda: balance(system, page)["frozen"], 30, what="the dispute freezing the account")
    figures = balance(system, page)
    assert (figures["tokenBalance"], figures["debt"]) == (50, 0) and figures["frozenSince"]
    assert spend(system, page, 1, "while frozen", 423)["error"] == "account_frozen"
    show_wallet(page)
    notice = page.locator("#frozen-notice")
    expect(notice).to_be_visible()
    expect(page.locator("#frozen-title")).to_contain_text("Spending is paused while a payment dispute is reviewed")
    expect(notice).to_contain_text("What happens next:")
    expect(notice).to_contain_text("you can still buy tokens")
    expect(page.locator("#debt-notice")).to_be_hidden()
    assert page.get_by_role("status").filter(has_text="Spending is paused").count() == 1
    page.locator("#wallet").scroll_into_view_if_needed()
    picture(page, "wallet-frozen")
    assert csp_errors == []


def test_a_refund_of_spent_tokens_shows_the_debt(chromium, system):
    page = new_page(chromium)
    csp_errors = watch_csp(page)
    sign_up(page, system)
    session_id = bought(system, page, {"packageId": "starter"})
    wait_until(lambda: balance(system, page)["tokenBalance"] == 50, 30, what="the purchase credited")
    spend(system, page, 50, "a long render")
    refund = requests.post(f"{system.sandbox_url}/v1/refunds", headers=SANDBOX_KEY, timeout=10,
                           data={"payment_intent": session_of(system, session_id)["payment_intent"]})
    assert refund.status_code == 200, refund.text
    wait_until(lambda: balance(system, page)["debt"] == 50, 30, what="the refund taking the tokens back")
    show_wallet(page)
    expect(page.locator("#debt-notice")).to_be_visible()
    expect(page.locator("#debt-title")).to_have_text("You owe 50 tokens")
    expect(page.locator("#debt-notice")).to_contain_text("New purchases and plan tokens repay this first")
    expect(page.locator("#wallet-balance")).to_have_text("-50")
    expect(page.locator("#frozen-notice")).to_be_hidden()
    first = rows(page)[0]
    assert (first["type"], first["amount"], first["after"]) == ("refund", -50, -50)
    assert "Refund: Starter package" in first["text"]
    page.locator("#wallet").scroll_into_view_if_needed()
    picture(page, "wallet-debt")
    assert csp_errors == []


def mirrored(system, uid) -> dict:
    return (system.deps.store.get_user(uid) or {}).get("subscription") or {}


def test_cancel_in_the_customer_portal_and_come_back(chromium, system):
    page = new_page(chromium)
    csp_errors = watch_csp(page)
    sign_up(page, system)
    uid = uid_of(page)
    bought(system, page, {"planId": "monthly"})
    wait_until(lambda: mirrored(system, uid).get("status") == "active", 30, what="the plan mirrored")
    wait_until(lambda: balance(system, page)["tokenBalance"] == 600, 30, what="the plan allowance")
    sub_id = mirrored(system, uid)["id"]
    show_wallet(page)
    # The plan's first invoice has its receipt too.
    allowance = rows(page)[0]
    assert allowance["type"] == "subscription_allowance" and "Monthly plan allowance" in allowance["text"]
    invoice_id = page.locator("#history-rows button.receipt").first.get_attribute("data-payment")
    resp = requests.get(f"{system.base_url}/api/purchases/{invoice_id}/receipt", headers=as_user(page), timeout=10)
    assert resp.status_code == 200 and resp.json()["receiptUrl"].startswith(f"{system.sandbox_url}/receipts/")

    portal = page.locator("#portal-monthly")
    expect(portal).to_be_visible()
    expect(page.locator("#cancel-monthly")).to_be_visible()  # the direct cancel stays beside the portal
    portal.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/p/session/test_"))
    expect(page.locator(f"#status-{sub_id}")).to_have_attribute("data-status", "active")
    picture(page, "wallet-portal")
    page.locator(f"#cancel-{sub_id}").click()
    expect(page.locator("#confirm-text")).to_contain_text("still available until the end of your")
    page.locator("#confirm-cancel-button").click()
    expect(page.locator(f"#status-{sub_id}")).to_have_attribute("data-status", "canceling")
    expect(page.locator(f"#status-{sub_id}")).to_contain_text("Cancels on")
    page.locator("#return-link").click()

    page.wait_for_url(re.compile(r".*/buy-tokens"))
    status = page.locator("#plan-status-monthly")
    expect(status).to_have_attribute("data-status", "canceling", timeout=20_000)
    renewal = page.evaluate("s => new Date(s * 1000).toLocaleDateString(undefined, "
                            "{year: 'numeric', month: 'long', day: 'numeric'})", mirrored(system, uid)["currentPeriodEnd"])
    expect(status).to_contain_text(f"Canceled: your plan ends on {renewal}.")
    assert page.evaluate("location.search") == ""
    assert mirrored(system, uid)["cancelAtPeriodEnd"] is True
    expect(portal).to_be_visible()
    page.locator("li.plan").scroll_into_view_if_needed()
    picture(page, "wallet-portal-returned")
    screenshot(page, "wallet-portal-returned-full")
    assert csp_errors == []
