"""Stripe-shaped API errors: `{"error": {"type", "message", "code", "param", ...}}`."""

from __future__ import annotations


class StripeError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.extra = extra

    def body(self, request_id: str | None = None) -> dict:
        err = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = "https://stripe.com/docs/error-codes/" + self.code.replace("_", "-")
        if self.param:
            err["param"] = self.param
        err.update(self.extra)
        if request_id:
            err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": err}


def missing_param(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def invalid_param(param: str, message: str, code: str = "parameter_invalid_empty") -> StripeError:
    if code == "parameter_invalid_empty":
        code = None
    return StripeError(400, message, code=code, param=param)


def no_such(kind: str, obj_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{obj_id}'", code="resource_missing", param=param)


def card_declined(message: str = "Your card was declined.", decline_code: str = "generic_decline",
                  code: str = "card_declined", **extra) -> StripeError:
    return StripeError(402, message, type="card_error", code=code, decline_code=decline_code, **extra)
