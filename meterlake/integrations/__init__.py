"""Billing systems meterlake feeds: Stripe (push and compare) and signed webhooks."""
