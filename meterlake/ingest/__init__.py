"""Ingest: landing batches, parsing and validation, identity, and the landing → bronze stream."""
