"""Event handlers: one per Stripe event family, chosen in one registry (core.handlers.registry).

Each handler takes the injected dependencies and a parsed ``StripeEvent`` and returns an
``Outcome``; it writes the event's record in the same transaction as the change it makes.
"""
