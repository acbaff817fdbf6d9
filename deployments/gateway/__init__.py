"""The OpenAI-compatible gateway at /v1: a plain ASGI app in front of Django (no sync middleware on
the hot path). Key lookups and routing tables are cached for seconds, so a request normally
touches no database; engines are called through one shared async HTTP client."""
