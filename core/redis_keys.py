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


DEAD_LETTER_SPOOL = f"{PREFIX}deadletter:spool"
