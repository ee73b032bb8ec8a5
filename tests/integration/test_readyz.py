"""``/readyz`` reuses pooled connections (issue 9 §2.2): probing Redis, Firestore and the broker
twenty times must not open a Redis connection per call. The count is the server's, shared with
the worker and anything else on the machine, so the bound leaves room for their few."""
from __future__ import annotations

import redis as redis_lib


def connections_received(settings) -> int:
    return int(redis_lib.Redis.from_url(settings.broker_url).info("stats")["total_connections_received"])


def test_readiness_probes_reuse_their_connections(web_client, settings):
    assert web_client.get("/readyz").status_code == 200  # warm: the pools make their first connections
    before = connections_received(settings)
    for _ in range(20):
        resp = web_client.get("/readyz")
        assert resp.status_code == 200 and resp.json["status"] == "ready", resp.json
    opened = connections_received(settings) - before - 1  # the counting client's own connection
    assert opened < 10, f"{opened} new Redis connections for 20 readiness probes (one per probe before the fix)"
