"""OpenAPI descriptions of ``POST /v1/events``: the body is read raw (each event is checked
one by one, so one bad event does not fail the batch), hence described here, from the
event schema file itself, rather than by a request model."""

from __future__ import annotations

from meterlake.ingest.event_schema import load_event_schemas


def _event_schema() -> dict:
    latest = max(load_event_schemas().values(), key=lambda s: int(s.version))
    return {k: v for k, v in latest.document.items() if not k.startswith("$")}


_RESULT = {
    "type": "object",
    "properties": {
        "index": {"type": "integer"},
        "event_id": {"type": "string"},
        "status": {"type": "string", "enum": ["accepted", "duplicate", "rejected"]},
        "reason": {"type": "string"},
        "detail": {"type": "string"},
    },
    "required": ["index", "status"],
}
_ANSWER = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "rejected": {"type": "integer"},
        "batch_id": {"type": ["string", "null"]},
        "received_at": {"type": "string"},
        "results": {"type": "array", "items": _RESULT},
    },
}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


EVENTS_REQUEST = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    _event_schema(),
                    {
                        "type": "object",
                        "required": ["events"],
                        "properties": {"events": {"type": "array", "items": _event_schema()}},
                    },
                ]
            }
        }
    },
}
EVENTS_RESPONSES = {
    202: _json(_ANSWER, "the accepted events are durably landed; a result per event"),
    400: _json(_ERROR, "not JSON, or not an event or a batch"),
    401: _json(_ERROR, "no key or an unknown key"),
    403: _json(_ERROR, "the key's role may not send events"),
    413: _json(_ERROR, "body or batch over the limit"),
    422: _json(_ANSWER, "every event was rejected; nothing was stored"),
    429: _json(_ERROR, "over the tenant's rate limit; see Retry-After"),
    503: _json(_ERROR, "backpressure (landing backlog or disk); see Retry-After"),
}
