"""Reconciliation: prove the layers and the invoices agree, and say where they do not."""
