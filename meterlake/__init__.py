"""meterlake: usage metering and billing on a Delta lakehouse."""

__version__ = "0.1.0"
