"""Billing: periods in the customer's time zone, segments, pricing in exact arithmetic."""
