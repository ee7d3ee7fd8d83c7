"""Who may do what (roles, tenant scope, keys) and the record of what they read."""
