"""Capture: the HTTP ingest API (``meterlake serve``) that lands events from products."""
