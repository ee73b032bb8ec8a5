"""Adapters: Firestore, Redis, Stripe, files. They do I/O and hold no rules; only
core.bootstrap builds them, at process start."""
