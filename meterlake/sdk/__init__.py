"""The Python SDK: ``Client.track`` records usage without blocking, a disk spool keeps it
through crashes and outages, and background delivery sends it to ``meterlake serve``.

    from meterlake.sdk import Client
    client = Client(api_key, "http://127.0.0.1:8080", spool_dir="/var/spool/myapp-usage")
    client.track("cust-42", "api_call", quantity=1, properties={"route": "/v1/items"})

WSGI/ASGI middleware that records one event per request: `meterlake.sdk.middleware`.
"""

from meterlake.sdk.client import Client

__all__ = ["Client"]
