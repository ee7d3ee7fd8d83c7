"""Data quality: Great Expectations suites (``expectations/``) over every layer."""
