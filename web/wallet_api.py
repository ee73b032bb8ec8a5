"""The signed-in user's wallet: the history as CSV, a purchase's Stripe receipt, the customer portal.

    GET  /api/tokens/transactions.csv      the whole ledger, newest first, streamed (text/csv)
    GET  /api/purchases/<payment id>/receipt  {"paymentId", "receiptUrl"} of the user's own paid purchase
    POST /api/billing-portal               {"url"}: a Stripe customer portal session for the user's plan

Each needs the user's bearer token (a service key is not enough: these are the person's own).
"""
from __future__ import annotations

import time

from flask import Blueprint, Response, g, jsonify, stream_with_context

from core.services import history, wallet
from web import api
from web.security import signed_in

bp = Blueprint("wallet_api", __name__, url_prefix="/api")

# Errors are answered by the app's one problem table (web/problems.py), these included.


@bp.get("/tokens/transactions.csv")
@signed_in
def transactions_csv():
    lines = history.csv_export(api._deps(), g.uid)
    name = time.strftime("tokenbank-history-%Y-%m-%d.csv", time.gmtime(api._deps().clock()))
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/purchases/<payment_id>/receipt")
@signed_in
def receipt(payment_id: str):
    return jsonify(wallet.receipt_url(api._deps(), g.uid, payment_id))


@bp.post("/billing-portal")
@signed_in
def billing_portal():
    return jsonify(wallet.billing_portal_url(api._deps(), g.uid))
