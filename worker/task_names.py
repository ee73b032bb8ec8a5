"""Stable, explicit task names: the contract between the web tier and the workers."""
PROCESS_STRIPE_EVENT = "tokenbank.stripe.process_event"
RECORD_IGNORED_EVENT = "tokenbank.stripe.record_ignored_event"
QUEUE = "tokenbank"
