"""Every Redis key tokenbank writes, in one place, under one prefix."""
PREFIX = "tb:"


def velocity(user_id: str) -> str:
    return f"{PREFIX}velocity:{{{user_id}}}"


def reservations(user_id: str) -> str:
    return f"{PREFIX}reservations:{{{user_id}}}"


def user_lock(user_id: str) -> str:
    return f"{PREFIX}lock:user:{{{user_id}}}"


def signature_failures(window: int) -> str:
    return f"{PREFIX}sigfail:{window}"


def success_checks(user_id: str) -> str:
    return f"{PREFIX}confirm:{{{user_id}}}"


def reconcile_requested(session_id: str) -> str:
    return f"{PREFIX}reconcile:requested:{session_id}"


def job_slot(job: str, slot: int) -> str:
    return f"{PREFIX}job:{job}:{slot}"


def operator_log() -> str:
    return f"{PREFIX}ops:log"


DEAD_LETTER_SPOOL = f"{PREFIX}deadletter:spool"


def checkout_attempt(user_id: str, client_key: str) -> str:
    """One checkout attempt per (user, Idempotency-Key): its pinned parameters and, once created, its session."""
    return f"{PREFIX}checkout:{{{user_id}}}:{client_key}"


def windows_known(user_id: str) -> str:
    """Present while the user's velocity and reservation windows are complete in Redis; gone
    after Redis lost its data, so the windows are rebuilt from Firestore first."""
    return f"{PREFIX}windows:known:{{{user_id}}}"


def wallet_calls(user_id: str, what: str) -> str:
    """A user's calls per minute to one wallet route that reads much or asks Stripe (export, receipt, portal)."""
    return f"{PREFIX}wallet:{what}:{{{user_id}}}"


def run_lock(key: str) -> str:
    """Held by the one run of this key (``endpoint:{id}``: its deliveries; ``fanout:{uid}``: an account's fan-out)."""
    return f"{PREFIX}lock:run:{key}"


def run_kicked(key: str) -> str:
    """A run of this key was asked for while another held its lock."""
    return f"{PREFIX}kick:run:{key}"
