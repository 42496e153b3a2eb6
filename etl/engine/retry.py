"""Retry transient failures with exponential backoff; terminal ones fail at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from etl.errors import ErpOaError, classify_db_error, is_transient_db_error

T = TypeVar("T")
log = logging.getLogger("erpoa.retry")


def with_retries(
    fn: Callable[[], T], *, what: str, retries: int, backoff: float, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Call `fn`; on a transient error wait backoff * 2**attempt and try again, up to `retries` times."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            transient = is_transient_db_error(exc) or (isinstance(exc, ErpOaError) and exc.retryable)
            if not transient:
                raise
            if attempt >= retries:
                error = classify_db_error(exc, what=what)
                raise type(error)(f"{error} (gave up after {retries} retries)") from None
            delay = backoff * (2**attempt)
            log.warning(
                "%s: transient error, retry %d/%d in %.1fs: %s",
                what,
                attempt + 1,
                retries,
                delay,
                str(exc).splitlines()[0][:200],
            )
            sleep(delay)
            attempt += 1
