"""One exception hierarchy: the CLI turns any of these into one line and a non-zero exit."""

from __future__ import annotations

import re


class MeterlakeError(Exception):
    """Base of every error a user can cause and fix; never a bug in meterlake itself.

    ``retryable`` says whether running the same step again later can succeed without
    anyone acting (schedulers fail the others at once instead of retrying them)."""

    exit_code = 2
    retryable = False


class ConfigError(MeterlakeError):
    """A setting, flag or environment variable has a value meterlake cannot use."""


class InputFileError(MeterlakeError):
    """A file given on the command line is missing, unreadable or not in the expected format."""


class CatalogError(MeterlakeError):
    """The catalog file breaks the schema or a cross-reference rule.

    `path` names the offending field the way a user finds it in the YAML,
    e.g. ``customers[0].subscriptions[1].end``.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class WarehouseError(MeterlakeError):
    """The warehouse is missing a table or holds something meterlake did not write."""


class TieringError(MeterlakeError):
    """A copy between tiers did not verify; the source was left as it was."""

    exit_code = 3


class StaleDataError(MeterlakeError):
    """A step would read tables that are behind their inputs (run ``pipeline run`` first)."""

    retryable = True


class BillingSystemError(MeterlakeError):
    """A billing system (Stripe, a webhook endpoint) did not take everything; what was
    delivered is recorded and a later run resumes the rest."""

    retryable = True


class LeaseHeldError(MeterlakeError):
    """Another process holds the writer lease this step needs (`meterlake.lease`); it is
    doing the same work, or will free the lease when it stops or its lease expires."""

    exit_code = 75  # EX_TEMPFAIL: try again later
    retryable = True


class LeaseLostError(MeterlakeError):
    """This process's writer lease expired or was taken over; it stopped before its next
    commit, and the new holder carries on from what was committed."""

    exit_code = 75
    retryable = True


class ConcurrentWriterError(MeterlakeError):
    """Another writer committed where this one had read, in a way this one cannot merge;
    nothing this run wrote is lost, and a rerun starts from what is committed."""

    exit_code = 75
    retryable = True


def root_cause(exc: BaseException) -> str:
    """The most specific line of an error, for a one-line report: the last ``XError: ...``
    line of Spark's wrapped Python errors, else the first line, else the error's type."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    if raised:
        return raised[-1]
    return lines[0] if lines else type(exc).__name__
