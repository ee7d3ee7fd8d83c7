"""S3 lifecycle rules for the cold tier, from ``infra/lifecycle.json``, applied with boto3.

The policy (``${PREFIX}`` becomes the cold root's key prefix):

- objects move to ``GLACIER_IR`` 150 days after they are written: raw events reach cold
  at 30 days of age, so they are archived at 180. Glacier *Instant Retrieval* keeps every
  object readable with a plain GET, which Delta needs: a class that must be restored
  first (GLACIER, DEEP_ARCHIVE) would make the table unreadable;
- superseded object versions (versioned buckets) expire after 30 days; unfinished
  multipart uploads are aborted after 7.

There is deliberately no expiration of current objects: deleting Delta data files under
the table would corrupt it. Retention is enforced by `meterlake tier run`, which deletes
cold rows past the tenant's ``retention_days`` through Delta, logs it, and VACUUMs.

MinIO (the local server) accepts transitions only to a remote tier configured by its
administrator and has no multipart-abort rule (it cleans stale uploads itself), so
``basic=True`` applies only the expiration rules there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from meterlake.errors import ConfigError

if TYPE_CHECKING:
    from meterlake.config import Settings

POLICY = Path(__file__).resolve().parents[2] / "infra" / "lifecycle.json"


BASIC = {"ID", "Status", "Filter", "Expiration", "NoncurrentVersionExpiration"}


def rules(prefix: str, *, basic: bool = False, policy: Path = POLICY) -> list[dict[str, Any]]:
    """The policy's rules for objects under ``prefix``; ``basic``: expiration rules only."""
    text = policy.read_text().replace("${PREFIX}", f"{prefix.strip('/')}/" if prefix else "")
    found = json.loads(text)["Rules"]
    return [r for r in found if not basic or set(r) <= BASIC]


def apply_lifecycle(settings: Settings, *, basic: bool = False) -> list[dict[str, Any]]:
    """Put the rules on the cold root's bucket; returns the rules the server then holds."""
    from botocore.exceptions import ClientError

    from meterlake.storage import s3_client

    url = urlparse(settings.cold)
    if url.scheme not in ("s3a", "s3"):
        raise ConfigError(f"cold tier {settings.cold} is not on object storage; no lifecycle")
    client = s3_client(settings.s3.endpoint, settings.s3.region)
    wanted = rules(url.path, basic=basic)
    try:
        client.put_bucket_lifecycle_configuration(
            Bucket=url.netloc, LifecycleConfiguration={"Rules": wanted}
        )
        held = client.get_bucket_lifecycle_configuration(Bucket=url.netloc)["Rules"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ConfigError(
            f"lifecycle on bucket {url.netloc}: {error.get('Code')}: {error.get('Message')}"
        ) from None
    return held
