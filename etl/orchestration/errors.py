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


def fail_task(message: str, *, alerted: bool = False) -> Exception:
    """An exception that fails the current task without retrying it.

    `alerted` marks a failure whose alerts were already sent, so the failure
    callback does not send them again.
    """
    from airflow.sdk.exceptions import AirflowFailException

    exc = AirflowFailException(message)
    setattr(exc, ALERTED, alerted)
    return exc


def skip_task(reason: str) -> Exception:
    """An exception that marks the current task skipped."""
    from airflow.sdk.exceptions import AirflowSkipException

    return AirflowSkipException(reason)


@contextmanager
def airflow_errors(
    what: str, *, redact: Callable[[str], str] = str, on_error: ErrorHook | None = None
) -> Iterator[None]:
    """Translate errors raised in the block for Airflow.

    `on_error(exc, message, transient)` runs first (e.g. to record the failure in
    the store); its own failure is logged, never raised over the original error.
    """
    try:
        yield
    except Exception as exc:
        if _is_airflow_signal(exc):
            raise
        transient = is_transient(exc)
        message = redact(str(exc).strip() or type(exc).__name__)
        if on_error is not None:
            try:
                on_error(exc, message, transient)
            except Exception as hook_exc:
                log.warning("%s: could not record the failure: %s", what, redact(str(hook_exc)))
        if transient:
            log.warning("%s: transient error, Airflow will retry: %s", what, message)
            raise
        raise fail_task(f"{what}: {type(exc).__name__}: {message}") from exc
