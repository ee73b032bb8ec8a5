from core.alerts import webhook_signature_failure
from core import redis_keys

NOW = 1_767_225_600.0  # a whole minute


def test_a_flood_of_refusals_writes_the_alert_only_at_powers_of_ten(redis, store):
    written = [webhook_signature_failure(redis, store, "signature mismatch", {"ip": "203.0.113.9"}, NOW + i * 0.05)
               for i in range(1000)]
    counts = [alert.details["count"] for alert in written if alert is not None]
    assert counts == [1, 10, 100, 1000]
    assert store.alert_writes == [f"webhook_signature_{int(NOW)}"] * 4
    doc = store.alerts[f"webhook_signature_{int(NOW)}"]
    assert doc["type"] == "webhook_signature_failure"
    assert doc["details"] == {"windowStart": int(NOW), "windowSeconds": 60, "count": 1000,
                              "lastReason": "signature mismatch", "ip": "203.0.113.9"}


def test_a_new_minute_starts_a_new_alert(redis, store):
    for now in (NOW, NOW + 59.9, NOW + 60, NOW + 61):
        webhook_signature_failure(redis, store, "signature mismatch", {}, now)
    assert store.alert_writes == [f"webhook_signature_{int(NOW)}", f"webhook_signature_{int(NOW) + 60}"]
    assert store.alerts[f"webhook_signature_{int(NOW) + 60}"]["details"]["count"] == 1


def test_the_counter_expires_on_its_own(redis, store):
    webhook_signature_failure(redis, store, "signature mismatch", {}, NOW)
    assert 0 < redis.ttl(redis_keys.signature_failures(int(NOW))) <= 600
