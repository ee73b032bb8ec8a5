"""A local Stripe API sandbox for tokenbank's development and tests (never for production).

Run it with `python -m sandbox`; see sandbox/README.md.
"""
