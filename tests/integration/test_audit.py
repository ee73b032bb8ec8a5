"""The audit over real Firestore data: clean after real operations, and it finds tampering."""
from __future__ import annotations

from google.cloud.firestore_v1.base_query import FieldFilter

from core.services.audit import audit
from tests.integration.test_ledger_operations import buy, charge_refunded, deliver, grant, processed, spend


def test_audit_is_clean_after_real_operations_and_finds_every_kind_of_tampering(web_client, deps, worker, secret):
    session = buy(web_client, deps, secret, "audited", "basic")
    grant(web_client, "audited", 25)
    spend(web_client, "audited", 30)
    processed(deps, deliver(web_client, charge_refunded(session, 750), secret))
    buy(web_client, deps, secret, "other", "starter")
    report = audit(deps, batch_size=1)
    assert report.ok, [v.as_dict() for v in report.violations]
    assert report.users_checked == 2 and report.entries_checked == 5

    db = deps.store.db
    db.collection("users").document("audited").update({"tokenBalance": 999999})
    spend_entry = next(s for s in db.collection("transactions").where(filter=FieldFilter("userId", "==", "audited")).stream()
                       if s.get("type") == "spend")
    spend_entry.reference.update({"amount": -1})
    db.collection("transactions").document(f"purchase_{session['id']}").delete()
    found = {(v.user_id, v.check) for v in audit(deps).violations}
    assert ("audited", "balance_equals_ledger") in found
    assert ("audited", "entry_changed") in found
    assert ("audited", "fulfilled_purchase_has_one_entry") in found
    assert ("audited", "totalTokensPurchased_equals_entries") in found
    assert all(user == "audited" for user, _ in found)  # the untouched account stays clean
