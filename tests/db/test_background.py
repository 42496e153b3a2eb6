"""`BackgroundWrites`: one write at a time in a thread, errors surface, leaving always waits."""

from __future__ import annotations

import threading
import time

import pytest

from etl.db.background import BackgroundWrites

pytestmark = pytest.mark.unit


def test_writes_run_in_order_in_one_other_thread_one_at_a_time() -> None:
    done: list[int] = []
    threads: set[int] = set()
    busy = threading.Lock()

    def write(n: int) -> None:
        assert busy.acquire(blocking=False), "two writes overlapped"
        try:
            threads.add(threading.get_ident())
            time.sleep(0.01)
            done.append(n)
        finally:
            busy.release()

    with BackgroundWrites("test") as writes:
        for n in range(5):
            writes.submit(lambda n=n: write(n))
    assert done == [0, 1, 2, 3, 4]
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_the_caller_goes_on_while_a_write_is_in_flight() -> None:
    started, release = threading.Event(), threading.Event()

    def write() -> None:
        started.set()
        assert release.wait(5)

    with BackgroundWrites("test") as writes:
        writes.submit(write)
        assert started.wait(5)  # submit returned while the write still runs
        release.set()


def test_an_error_of_a_write_is_raised_by_the_next_submit_and_later_writes_do_not_run() -> None:
    ran: list[str] = []

    def broken() -> None:
        raise ConnectionError("server closed the connection")

    with pytest.raises(ConnectionError, match="server closed"), BackgroundWrites("test") as writes:
        writes.submit(broken)
        writes.submit(lambda: ran.append("second"))
    assert ran == []


def test_an_error_of_the_last_write_is_raised_when_the_block_ends() -> None:
    def broken() -> None:
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"), BackgroundWrites("test") as writes:
        writes.submit(broken)


def test_a_failing_block_still_waits_for_the_write_in_flight() -> None:
    finished: list[bool] = []

    def slow() -> None:
        time.sleep(0.2)
        finished.append(True)

    with pytest.raises(RuntimeError, match="mapping failed"), BackgroundWrites("test") as writes:
        writes.submit(slow)
        raise RuntimeError("mapping failed")
    assert finished == [True]  # a retry that deletes staged rows cannot race this commit


def test_sync_mode_runs_each_write_at_once_in_the_callers_thread() -> None:
    where: list[int] = []
    with BackgroundWrites("test", sync=True) as writes:
        writes.submit(lambda: where.append(threading.get_ident()))
        assert where == [threading.get_ident()]


def test_a_failed_write_fails_every_later_call_so_a_retry_cannot_skip_it() -> None:
    ran: list[str] = []

    def broken() -> None:
        raise ConnectionError("gold write lost")

    writes = BackgroundWrites("test")
    writes.submit(broken)
    for _ in range(3):  # e.g. a caller's retries of its next step
        with pytest.raises(ConnectionError, match="gold write lost"):
            writes.submit(lambda: ran.append("next"))
    with pytest.raises(ConnectionError, match="gold write lost"):
        writes.wait()
    with pytest.raises(ConnectionError, match="gold write lost"):
        writes.__exit__(None, None, None)
    assert ran == []
