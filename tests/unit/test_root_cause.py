"""One-line error reports: the most specific line of an error, through Spark's wrapping."""

from __future__ import annotations

from meterlake.errors import root_cause


def test_a_python_error_wrapped_by_a_foreach_batch_failure_is_named_by_its_own_line() -> None:
    wrapped = RuntimeError(
        "[STREAM_FAILED] Query [id = 4793cd50] terminated with exception:"
        " [FOREACH_BATCH_USER_FUNCTION_ERROR] An error occurred in the user provided function"
        " in foreach batch sink. Reason: An exception was raised by the Python Proxy. Return"
        " Message: Traceback (most recent call last):\n"
        '  File "meterlake/rollups/refresh.py", line 226, in handle\n'
        "py4j.protocol.Py4JJavaError: An error occurred while calling o12.merge.\n"
        "meterlake.errors.StaleDataError: bronze moved past version 15\n"
    )
    assert root_cause(wrapped) == "meterlake.errors.StaleDataError: bronze moved past version 15"


def test_a_plain_error_is_its_first_line_and_an_empty_one_its_type() -> None:
    assert root_cause(ValueError("\n  bad flag --at\nmore detail")) == "bad flag --at"
    assert root_cause(KeyError()) == "KeyError"
