"""What analysts query: materialised views, Spark SQL with tenant scope, usage anomalies."""
