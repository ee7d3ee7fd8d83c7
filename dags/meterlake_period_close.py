"""
### meterlake: period close

Hourly. Finds subscription periods whose late-event grace (end + grace, per tenant,
48 h by default) has passed and that are not closed yet; runs the data-quality gate and
the pre-invoice reconciliation; then finalises their invoices and writes one
`billing.period.closed` event per period to `billing.outbox`. Periods still in grace
wait for a later run; a period is closed once, however often this runs.

After the close: the signed webhooks deliver the outbox events, the final invoices are
pushed to Stripe, and the post-invoice reconciliation compares Stripe's copy with
meterlake's line by line (a mismatch fails the task). Those three tasks skip themselves
when no webhook URL / Stripe key is configured.

Each task calls one `meterlake.orchestration` function.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, get_current_context, task

DEFAULTS = {"retries": 2, "retry_delay": timedelta(minutes=5)}


def _as_of() -> str:
    from meterlake.orchestration import interval_end

    return interval_end(get_current_context())


@dag(
    dag_id="meterlake_period_close",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["meterlake", "billing"],
    doc_md=__doc__,
)
def meterlake_period_close():
    @task.short_circuit
    def find_due() -> list:
        from meterlake import orchestration

        return orchestration.due(_as_of())

    @task
    def quality_gate() -> dict:
        from meterlake import orchestration

        return orchestration.quality_gate()

    @task
    def pre_invoice_reconciliation() -> dict:
        from meterlake import orchestration

        return orchestration.reconcile(_as_of())

    @task
    def finalise_and_emit() -> dict:
        from meterlake import orchestration

        return orchestration.finalise(_as_of())

    @task
    def deliver_webhooks() -> dict:
        from meterlake import orchestration

        return orchestration.deliver_webhooks()

    @task
    def stripe_sync() -> dict:
        from meterlake import orchestration

        return orchestration.stripe_sync(_as_of())

    @task
    def post_invoice_stripe_reconciliation() -> dict:
        from meterlake import orchestration

        return orchestration.stripe_reconciliation(_as_of())

    closed = find_due() >> quality_gate() >> pre_invoice_reconciliation() >> finalise_and_emit()
    closed >> deliver_webhooks()
    closed >> stripe_sync() >> post_invoice_stripe_reconciliation()


meterlake_period_close()
