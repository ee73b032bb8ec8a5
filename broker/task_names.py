"""Stable, explicit task names: the contract between the web tier and the workers."""
PROCESS_STRIPE_EVENT = "tokenbank.stripe.process_event"
RECORD_IGNORED_EVENT = "tokenbank.stripe.record_ignored_event"
QUEUE = "tokenbank"  # the default; CELERY_QUEUE overrides it
FULFIL_CHECKOUT_SESSION = "tokenbank.checkout.fulfil_session"
FULFIL_INVOICE = "tokenbank.plans.fulfil_invoice"
JOB_RECONCILE = "tokenbank.jobs.reconcile"
JOB_AUDIT = "tokenbank.jobs.audit"
JOB_SWEEP_INBOX = "tokenbank.jobs.sweep_inbox"
JOB_EXPIRE = "tokenbank.jobs.expire_holds_and_lots"
OUTBOX_FAN_OUT = "tokenbank.outbox.fan_out"  # args: [user_id, up_to_seq or null]
OUTBOX_DELIVER = "tokenbank.outbox.deliver"  # args: [endpoint_id]
JOB_SWEEP_OUTBOX = "tokenbank.jobs.sweep_outbox"
