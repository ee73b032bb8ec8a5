"""tokenbank's money rules, pure: standard library only, no I/O, no clock of their own.

Every rule that decides a balance lives here as a function or method of a frozen value:
an account's credit, spend, freeze and debt (``account``), a payment's status, credit and
reversals (``payment``), disputes (``dispute``), the subscription mirror (``subscription``),
the ledger's vocabulary (``ledger``) and the reading of Stripe's objects (``stripe``).
Adapters load and store these values; they hold no rules of their own, so the same rules
run on Firestore and in the unit tests' dict-backed unit of work.
"""
