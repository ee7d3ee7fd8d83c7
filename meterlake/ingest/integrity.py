"""Landing integrity: a landing file must still hash to the sha256 its manifest recorded.

Landing files are immutable; the one sanctioned rewrite is a GDPR erasure, which records
each file's sha256 after the rewrite in ``audit.erasures``. Any other difference means
the bytes changed after they were acknowledged (tampering, a bad restore, bit rot), and
nothing in such a file can be trusted to bill: bronze quarantines every line of it with
`reasons.LANDING_CHECKSUM_MISMATCH` (raw bytes kept, nothing billed, the batch counted in
the run's summary). A file that is gone altogether stops the run: silently skipping it
would lose events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterlake import tables
from meterlake.errors import StaleDataError
from meterlake.storage import storage_for

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from meterlake.config import Settings
    from meterlake.ingest.landing import LandingBatch


@dataclass(frozen=True)
class Altered:
    """A landing batch whose file no longer hashes to its manifest's sha256."""

    batch_id: str
    landing_file: str
    expected: str
    actual: str

    @property
    def detail(self) -> str:
        return (
            f"landing file {self.landing_file} has sha256 {self.actual}, its manifest says"
            f" {self.expected}: changed after it was landed; no line of it is billed"
        )


def erased_checksums(spark: SparkSession, settings: Settings) -> set[tuple[str, str]]:
    """(landing_file, sha256) pairs a GDPR erasure produced: legitimate rewrites."""
    found = set()
    for row in tables.read(spark, settings, tables.AUDIT_ERASURES).select("files").collect():
        found |= {(f["landing_file"], f["sha256_after"]) for f in json.loads(row.files)}
    return found


@dataclass(frozen=True)
class LandingCheck:
    missing: list[LandingBatch]  # manifest entries whose file is gone
    altered: dict[str, Altered]  # by batch id: files changed other than by an erasure


def check_landing(
    spark: SparkSession, settings: Settings, batches: list[LandingBatch]
) -> LandingCheck:
    """Hash each batch's file in ``settings``'s warehouse and compare with its manifest."""
    storage = storage_for(settings)
    missing: list[LandingBatch] = []
    differing: list[Altered] = []
    for batch in batches:
        actual = storage.sha256(batch.landing_file)
        if actual is None:
            missing.append(batch)
        elif actual != batch.sha256:
            differing.append(Altered(batch.batch_id, batch.landing_file, batch.sha256, actual))
    if not differing:  # the usual case: no need to read the erasure log
        return LandingCheck(missing, {})
    erased = erased_checksums(spark, settings)
    altered = {a.batch_id: a for a in differing if (a.landing_file, a.actual) not in erased}
    return LandingCheck(missing, altered)


def altered_batches(
    spark: SparkSession, settings: Settings, batches: list[LandingBatch]
) -> dict[str, Altered]:
    """The batches (by id) whose landing file changed; raises when a file is missing."""
    checked = check_landing(spark, settings, batches)
    if checked.missing:
        batch = checked.missing[0]
        raise StaleDataError(
            f"landing file {batch.landing_file} of batch {batch.batch_id} is missing;"
            " restore it from a backup (meterlake backup verify finds a good copy)"
        )
    return checked.altered
