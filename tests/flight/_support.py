"""Constants shared by the query-service tests (importable: ``tests/flight`` is on ``sys.path``)."""

from __future__ import annotations

API_KEY = "test-key-123"
KEYS_JSON = f'[{{"name": "tester", "key": "{API_KEY}"}}]'
