"""The catalog: meters, plans, customers, subscriptions and credits, validated and versioned."""
