"""The document's entries for web/wallet_api.py: the history as CSV, a purchase's receipt, the billing portal.

Each is the signed-in user's own (a service key is 401); the per-minute limits and the CSV's
columns are read from the services, so the document says what they apply.
"""
from __future__ import annotations

from core.services.history import COLUMNS, EXPORTS_PER_MINUTE
from core.services.wallet import PORTAL_RETURN_PATH, PORTALS_PER_MINUTE, RECEIPTS_PER_MINUTE
from web.openapi.components import UNAVAILABLE, USER, ok, problems

SIGNED_IN = (401, "no valid Firebase ID token (a service key is not enough: these are the person's own)")
STRIPE_DOWN = (502, "Stripe refused or could not be reached: nothing changed; try again",
               ("payment_provider_unavailable",))
PAYMENT_ID = {"name": "payment_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^(cs|in)_[A-Za-z0-9_]{1,250}$"},
              "description": "the user's own package purchase (Checkout Session `cs_…`) or plan invoice (`in_…`): "
                             "a ledger entry's `receiptFor`"}
CSV_NAME = r'^attachment; filename="tokenbank-history-[0-9]{4}-[0-9]{2}-[0-9]{2}\.csv"$'


def _per_minute(limit: int) -> tuple:
    return 429, f"more than {limit} a minute for this user; retry after Retry-After", ("rate_limited",)


def paths(catalog=None) -> dict:
    return {
        "/api/tokens/transactions.csv": {"get": {
            "tags": ["tokens"], "operationId": "exportTransactionsCsv", "security": USER,
            "summary": "The user's whole ledger as CSV, newest first (a download)",
            "description": f"Columns: {', '.join(COLUMNS)} (`date` UTC ISO 8601, `description` the entry's label). "
                           "RFC 4180 quoting, CRLF lines, a UTF-8 BOM; a text cell that starts with `=`, `+`, `-`, "
                           "`@`, tab or CR gets a leading `'` (never run as a formula). Streamed, read 100 entries at "
                           "a time; a store that is down before the first line is a 503.",
            "responses": {
                "200": {"description": "the CSV file", "content": {"text/csv": {"schema": {"type": "string"}}},
                        "headers": {"Content-Disposition": {
                            "required": True, "schema": {"type": "string", "pattern": CSV_NAME},
                            "description": 'attachment; filename="tokenbank-history-YYYY-MM-DD.csv" (UTC)'}}},
                **problems(SIGNED_IN, _per_minute(EXPORTS_PER_MINUTE), UNAVAILABLE)}}},
        "/api/purchases/{payment_id}/receipt": {"get": {
            "tags": ["purchases"], "operationId": "getReceipt", "security": USER, "parameters": [PAYMENT_ID],
            "summary": "The Stripe receipt of the user's own paid purchase or plan invoice",
            "description": "Read from Stripe on demand (the charge's `receipt_url`: Stripe keeps it current with "
                           "refunds). Another user's or an unknown id is 404 `not_found` and Stripe is not asked.",
            "responses": {**ok("Receipt", "the receipt's address"), **problems(
                (400, "`payment_id` is not a Checkout Session (`cs_…`) or invoice (`in_…`) id", ("invalid_request",)),
                SIGNED_IN,
                (404, "`not_found`: not this user's purchase (another user's included) or unknown; `no_receipt`: "
                      "not paid, or Stripe has no receipt for it", ("not_found", "no_receipt")),
                _per_minute(RECEIPTS_PER_MINUTE), STRIPE_DOWN, UNAVAILABLE)}}},
        "/api/billing-portal": {"post": {
            "tags": ["plans"], "operationId": "openBillingPortal", "security": USER,
            "summary": "A Stripe customer portal session for the user's own token plan",
            "description": "For the customer of the user's mirrored subscription (its `metadata.userId` is checked "
                           f"at Stripe); the portal returns to `{PORTAL_RETURN_PATH}`. Nothing changes until the "
                           "person acts in the portal; the plan then follows Stripe's "
                           "`customer.subscription.updated`. No body.",
            "responses": {**ok("BillingPortal", "the portal session's address"), **problems(
                SIGNED_IN, (404, "no plan to manage", ("no_subscription",)), _per_minute(PORTALS_PER_MINUTE),
                STRIPE_DOWN, UNAVAILABLE)}}},
    }
