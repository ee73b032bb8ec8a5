"""The document's entries for web/webhooks.py (the Stripe webhook, probes, metrics) and the document itself."""
from __future__ import annotations

from web.openapi.components import PUBLIC, json_body, ok, problems


def paths(catalog=None) -> dict:
    return {
        "/api/stripe/webhook": {"post": {
            "tags": ["stripe"], "operationId": "stripeWebhook", "security": [{"stripeSignature": []}],
            "summary": "Stripe's signed events: verified, written to the inbox, queued; then 200",
            "requestBody": json_body({"type": "object", "description": "a Stripe event (the raw body is signed)"}),
            "responses": {**ok("WebhookReceived", "durably accepted (`handled` false: a type tokenbank ignores)"),
                          **problems(
                              (400, "missing or wrong signature, outside the tolerance, not UTF-8 or not an "
                                    "event (`webhook_refused`, the reason in `detail`)"),
                              (413, "the body is over WEBHOOK_MAX_BODY_BYTES (`limit`)"),
                              (503, "the inbox did not take it: Stripe delivers again"))}}},
        "/healthz": {"get": {
            "tags": ["operations"], "operationId": "healthz", "security": PUBLIC, "summary": "Liveness",
            "responses": ok("Health", "the process answers")}},
        "/readyz": {"get": {
            "tags": ["operations"], "operationId": "readyz", "security": PUBLIC,
            "summary": "Readiness: Redis, Firestore and the broker answer",
            "responses": {**ok("Readiness", "all answer"),
                          "503": {"description": "one does not (its check names the error)",
                                  "content": {"application/json": {"schema": {"$ref":
                                                                              "#/components/schemas/Readiness"}}}}}}},
        "/metrics": {"get": {
            "tags": ["operations"], "operationId": "metrics",
            "security": [{}, {"metricsToken": []}],
            "summary": "Prometheus metrics (open only where METRICS_TOKEN is unset, i.e. in development)",
            "responses": {"200": {"description": "the Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **problems((401, "METRICS_TOKEN is set and the bearer token is not it"))}}},
        "/api/openapi.json": {"get": {
            "tags": ["operations"], "operationId": "openapi", "security": PUBLIC,
            "summary": "This document (OpenAPI 3.1)",
            "responses": {"200": {"description": "the document",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
