"""Count the database queries of one download for 1, 10 and 100 IDs (in-process test client).

Run inside the server's environment: `python bench/queries.py RAW_KEY ID...`; prints JSON.
Queries on the database cache's table (`make run`'s shared cache: throttles and download
slots; Redis in production) are counted apart from the download's own.
"""

import json
import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402


def main() -> None:
    raw_key, ids = sys.argv[1], sys.argv[2:]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}", HTTP_HOST="localhost")
    client.get("/api/v1/generations")  # the key's last_used_at write, once per 5 minutes
    counts = {}
    for count in (1, 10, 100):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/api/v1/generations/download?ids={','.join(ids[:count])}")
            for _ in response.streaming_content:
                pass
        cache_table = settings.CACHES["default"].get("LOCATION", "")
        on_cache = sum(cache_table in query["sql"] for query in queries.captured_queries)
        counts[str(count)] = {"download": len(queries) - on_cache, "cache": on_cache}
    print(json.dumps(counts))


main()
