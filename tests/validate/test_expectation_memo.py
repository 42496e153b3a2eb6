"""The gate builds each expectation's configuration once per validation, with the same results as GX's own way."""

from __future__ import annotations

import contextlib
import threading

import pytest
from great_expectations.expectations.expectation import Expectation

import etl.validate.gate as gate
from etl.validate.expectation_memo import memoized_configurations
from etl.validate.gate import validate_batch
from tests.validate.test_gate import employee_frame, employee_suite

BUILD = Expectation.__dict__["configuration"]


def _comparable(result):
    out = result.results.to_json_dict()
    out.pop("meta", None)  # run times and ids
    for res in out["results"]:
        res["expectation_config"].pop("id", None)
    return out


def _counting(monkeypatch) -> list[int]:
    """Counts GX's own builds of a configuration (what the memo saves)."""
    calls = [0]

    def build(self):
        calls[0] += 1
        return BUILD.fget(self)

    monkeypatch.setattr(Expectation, "configuration", property(build))
    return calls


def test_same_results_as_without_the_memo_and_far_fewer_builds(tmp_path, monkeypatch):
    df, suite = employee_frame(), employee_suite(tmp_path)
    calls = _counting(monkeypatch)
    memoized = validate_batch(df, suite, ["employee_code"])
    with_memo = calls[0]

    monkeypatch.setattr(gate, "memoized_configurations", contextlib.nullcontext)
    calls[0] = 0
    plain = validate_batch(df, suite, ["employee_code"])
    without = calls[0]

    assert not memoized.success and memoized.failed_rows == 7  # failing rows: both passes of the gate ran
    assert memoized.row_failures.equals(plain.row_failures)
    assert memoized.batch_failures == plain.batch_failures
    assert _comparable(memoized) == _comparable(plain)
    # GX looks the configuration up for every keyword argument: hundreds of builds for nine expectations;
    # with the memo, about one per expectation object it makes (suite, then each validation's copies)
    assert without > 200
    assert with_memo * 5 < without


def test_restored_after_an_error_and_other_threads_keep_gx_behaviour(tmp_path):
    suite = employee_suite(tmp_path)
    exp = suite.expectations[0]
    seen: dict[str, bool] = {}

    def other_thread() -> None:
        seen["memoized elsewhere"] = exp.configuration is exp.configuration

    with pytest.raises(RuntimeError), memoized_configurations():
        assert exp.configuration is exp.configuration  # one object within the validation
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        raise RuntimeError("a validation failed")
    assert seen == {"memoized elsewhere": False}
    assert Expectation.__dict__["configuration"] is BUILD
    assert exp.configuration is not exp.configuration  # GX's own: built at each lookup


def test_a_second_thread_validating_meanwhile_gets_gx_behaviour(tmp_path):
    suite = employee_suite(tmp_path)
    exp = suite.expectations[0]
    inner: dict[str, bool] = {}

    def validating() -> None:
        with memoized_configurations():  # the first thread holds the memo: this one runs without it
            inner["memoized"] = exp.configuration is exp.configuration

    with memoized_configurations():
        worker = threading.Thread(target=validating)
        worker.start()
        worker.join()
        assert exp.configuration is exp.configuration
    assert inner == {"memoized": False}
    assert Expectation.__dict__["configuration"] is BUILD
