"""Airflow retry semantics for erp-oa-sync errors.

Transient errors (a lost connection, a deadlock, a lock wait timeout, a lock held
by another sync) are re-raised unchanged so Airflow retries the task with its
exponential backoff; every stage is idempotent per (run, entity, stage), so a
retry converges. Terminal errors (configuration, data, a refused quality gate)
become `AirflowFailException`, which fails the task at once: retrying would only
fail again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from etl.errors import ErpOaError, LockedError, is_transient_db_error

log = logging.getLogger("erpoa.airflow")

ErrorHook = Callable[[BaseException, str, bool], None]


def gave_up(count: int) -> str:
    """How a transient error's message starts once Airflow has no retry left: "failed after 3 tries"."""
    return f"failed after {count} {'try' if count == 1 else 'tries'}"


def is_transient(exc: BaseException) -> bool:
    """True when retrying the task may succeed."""
    if isinstance(exc, LockedError):
        # Another run holds the entity: Airflow's backoff is the wait.
        return True
    if isinstance(exc, ErpOaError):
        return exc.retryable
    return isinstance(exc, ConnectionError | TimeoutError) or is_transient_db_error(exc)


def _is_airflow_signal(exc: BaseException) -> bool:
    try:
        from airflow.sdk.exceptions import AirflowException
    except ImportError:  # pragma: no cover - Airflow is always there when tasks run
        return False
    return isinstance(exc, AirflowException)


ALERTED = "erpoa_alerted"
#: Why a failure marked `alerted` is not alerted again by the failure callback (logged by it).
ALERTED_BY = "erpoa_alerted_by"


def fail_task(message: str, *, alerted: bool | str = False) -> Exception:
    """An exception that fails the current task without retrying it.

    `alerted` marks a failure that the failure callback must not alert again: True when
    this task sent the alerts itself, or a text saying who alerts it instead (logged).
    """
    from airflow.sdk.exceptions import AirflowFailException

    exc = AirflowFailException(message)
    setattr(exc, ALERTED, bool(alerted))
    if isinstance(alerted, str):
        setattr(exc, ALERTED_BY, alerted)
    return exc


def tries() -> tuple[int, int] | None:
    """(this try, all tries allowed) of the running Airflow task; None outside a task."""
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
        return int(ti.try_number), int(ti.max_tries) + 1
    except Exception:  # not in a task (a test, the CLI): nothing to say about retries
        return None


def last_try() -> tuple[int, int] | None:
    """(this try, all tries) when the running task has no retry left, else None."""
    count = tries()
    return count if count is not None and count[0] >= count[1] else None


def skip_task(reason: str) -> Exception:
    """An exception that marks the current task skipped."""
    from airflow.sdk.exceptions import AirflowSkipException

    return AirflowSkipException(reason)


@contextmanager
def airflow_errors(
    what: str,
    *,
    redact: Callable[[str], str] = str,
    on_error: ErrorHook | None = None,
    retry_hint: str | None = None,
) -> Iterator[None]:
    """Translate errors raised in the block for Airflow.

    `on_error(exc, message, transient)` runs first (e.g. to record the failure in
    the store); its own failure is logged, never raised over the original error.
    `transient` is False on the last try: Airflow retries it no more. Its message
    then says how many tries failed, and `retry_hint` (what to clear) is added to
    the task's error.
    """
    try:
        yield
    except Exception as exc:
        if _is_airflow_signal(exc):
            raise
        transient = is_transient(exc)
        message = redact(str(exc).strip() or type(exc).__name__)
        final = last_try() if transient else None
        if final is not None:  # Airflow gives up: say so, wherever the message goes (store, alert, log)
            transient = False
            message = f"{gave_up(final[1])}: {message}"
            if retry_hint:
                message = f"{message.rstrip()}{'' if message.rstrip().endswith('.') else '.'} {retry_hint}"
        if on_error is not None:
            try:
                on_error(exc, message, transient)
            except Exception as hook_exc:
                log.warning("%s: could not record the failure: %s", what, redact(str(hook_exc)))
        if transient:
            count = tries()
            of = f" (try {count[0]} of {count[1]})" if count else ""
            log.warning("%s: transient error, Airflow will retry%s: %s", what, of, message)
            raise
        raise fail_task(f"{what}: {type(exc).__name__}: {message}") from exc
