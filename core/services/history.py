"""A user's token history as people read it: a label per ledger entry, and the whole history as CSV.

- ``label(entry, catalog)`` names what an entry was in plain words ("Purchase: Starter package",
  "Monthly plan allowance", "Refund: Starter package", "Promotional tokens expired"...), the
  same words on the page (``GET /api/tokens/transactions``) and in the export.
- ``csv_export(deps, user_id)`` answers the signed-in user's whole ledger as CSV lines, newest
  first, reading it page by page (``PAGE`` entries a read, never all at once). It reads the
  first page before it answers, so a store that is down is a 503, not a truncated file; a
  failure after that propagates and ends the stream unfinished (the browser then saves nothing).
- CSV cells are RFC 4180 (quoted when they hold a comma, quote or line break; CRLF lines) and
  safe to open in a spreadsheet: a text cell that starts with ``= + - @``, a tab or a carriage
  return gets a leading ``'`` so it is never run as a formula. Amounts and balances are written
  as the integers they are (a signed number is data, not a formula).
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from core.deps import Deps
from core.domain.catalog import Catalog
from core.domain.ledger import (
    ADJUSTMENT, ALLOWANCE, DISPUTE_REVERSAL, EXPIRY, GRANT, PURCHASE, REFUND, SPEND,
)
from core.services.wallet import per_minute

PAGE = 100  # entries read per store call while exporting
EXPORTS_PER_MINUTE = 6
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = ("date", "type", "description", "amount", "balance_after", "reason", "reference", "entry_id")
REFERENCES = ("checkoutSessionId", "invoiceId", "disputeId", "holdId")


def _item_name(entry: Mapping[str, Any], catalog: Catalog) -> str:
    package = catalog.get(entry.get("packageId"))
    if package is not None:
        return f"{package.name} package"
    plan = catalog.plan(entry.get("planId"))
    if plan is not None:
        return f"{plan.name} plan payment"
    return "plan payment" if entry.get("invoiceId") else "purchase"


def label(entry: Mapping[str, Any], catalog: Catalog) -> str:
    """What the entry was, in the words the page and the export use."""
    kind = entry.get("type")
    if kind == PURCHASE:
        return f"Purchase: {_item_name(entry, catalog)}"
    if kind == ALLOWANCE:
        plan = catalog.plan(entry.get("planId"))
        return f"{plan.name} plan allowance" if plan else "Plan allowance"
    if kind == REFUND:
        return f"Refund: {_item_name(entry, catalog)}"
    if kind == DISPUTE_REVERSAL:
        return f"Dispute reversal: {_item_name(entry, catalog)}"
    if kind == GRANT:
        return "Promotional tokens" if entry.get("source") == "promo" else "Tokens granted"
    if kind == ADJUSTMENT:
        return "Adjustment"
    if kind == SPEND:
        return "Spent (reserved tokens used)" if entry.get("holdId") else "Spent"
    if kind == EXPIRY:
        return {"promo": "Promotional tokens expired", "plan": "Unused plan tokens expired"}.get(
            str(entry.get("source")), "Tokens expired")
    return str(kind or "Entry")


def reference(entry: Mapping[str, Any]) -> str | None:
    """The payment, dispute or hold the entry belongs to, if any."""
    return next((str(entry[k]) for k in REFERENCES if entry.get(k)), None)


def receipt_for(entry: Mapping[str, Any]) -> str | None:
    """The payment whose Stripe receipt the page links from this entry (purchases and plan allowances)."""
    if entry.get("type") == PURCHASE:
        return entry.get("checkoutSessionId")
    if entry.get("type") == ALLOWANCE:
        return entry.get("invoiceId")
    return None


def _utc(value: Any) -> str:
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ""


def safe_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: integers as they are, text that could start a formula
    with a leading quote, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_row(entry: Mapping[str, Any], catalog: Catalog) -> list[Any]:
    return [safe_cell(v) for v in (_utc(entry.get("createdAt")), entry.get("type"), label(entry, catalog),
                                   entry.get("amount"), entry.get("balanceAfter"), entry.get("reason"),
                                   reference(entry), entry.get("id"))]


def csv_lines(rows) -> Iterator[str]:
    """Each row as one CSV line (RFC 4180: CRLF, quotes doubled, quoted when needed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    for row in rows:
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def csv_export(deps: Deps, user_id: str) -> Iterator[str]:
    """The user's whole ledger as CSV text chunks (a header, then one line per entry, newest first).

    The rate limit and the first page are checked now; the rest is read as the answer streams.
    """
    per_minute(deps, user_id, "export", EXPORTS_PER_MINUTE, "Too many downloads; please wait a minute.")
    first, cursor = deps.store.list_entries(user_id, PAGE, None)

    def rows():
        yield ["\ufeff" + COLUMNS[0], *COLUMNS[1:]]  # the BOM tells spreadsheets the file is UTF-8
        page, after = first, cursor
        while True:
            for entry in page:
                yield csv_row(entry, deps.catalog)
            if after is None:
                return
            page, after = deps.store.list_entries(user_id, PAGE, after)

    return csv_lines(rows())
