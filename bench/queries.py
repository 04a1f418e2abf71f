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

# The download itself runs no transaction: every BEGIN/COMMIT/ROLLBACK is the cache's
# (its add and its atomic incr).
_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def _on_cache(query: dict[str, str]) -> bool:
    cache_table = settings.CACHES["default"].get("LOCATION", "")
    sql = query["sql"]
    return cache_table in sql or sql.upper().startswith(_TRANSACTION_CONTROL)


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
        on_cache = sum(map(_on_cache, queries.captured_queries))
        counts[str(count)] = {"download": len(queries) - on_cache, "cache": on_cache}
    print(json.dumps(counts))


main()
