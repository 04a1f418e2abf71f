"""Django's database cache with an atomic `incr`, for the throttles' counters.

Django's `DatabaseCache.incr` is a `get` then a `set`: two processes incrementing at once
both read n and both write n + 1, so a counter shared by every server process loses counts
(a 30/min limit let 85 requests through under 64 parallel ones). Here `incr` reads and
writes the row in one transaction that holds the row's write lock from before the read:

- PostgreSQL, MySQL, Oracle: `SELECT ... FOR UPDATE` locks the row; other incrementers
  wait for the commit, then read the new value.
- SQLite locks the whole database for writing, and the lock must be taken before the
  read: a transaction that reads first and writes second fails with "database is locked"
  (no busy wait) when another writer got in between. The reference settings open every
  transaction with `BEGIN IMMEDIATE` (`transaction_mode`), which takes it at BEGIN; for a
  host that does not, the transaction starts with a write that changes nothing, which
  takes the lock (waiting up to the connection's timeout) before the read.

The value stays pickled as Django stores it, so `get`, `set` and `add` are Django's own
and read what `incr` writes. Like Django's, `incr` raises ValueError for a missing or
expired key, and it keeps the key's expiry (as Redis's INCR does; Django's `set` would
reset it to the default timeout).
"""

import base64
import pickle
from typing import Any

from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.db import connections, models, router, transaction
from django.utils.timezone import now as tz_now


class DatabaseCache(DjangoDatabaseCache):
    """`django.core.cache.backends.db.DatabaseCache` whose `incr`/`decr` are atomic."""

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        lock, select, update = self._statements(connection)
        with transaction.atomic(using=db), connection.cursor() as cursor:
            if lock:
                cursor.execute(lock, [key])
            cursor.execute(select, [key])
            row = cursor.fetchone()
            if row is None or self._expires(connection, row[1]) < tz_now():
                raise ValueError(f"Key '{key}' not found")
            value = self._decode(connection, row[0]) + delta
            cursor.execute(update, [self._encode(value), key])
        return value

    _table: str  # set by DatabaseCache.__init__; not in django-stubs

    def _statements(self, connection: Any) -> tuple[str | None, str, str]:
        """SQL that takes the row's lock (None: the SELECT does, FOR UPDATE), reads the
        row, and writes its value; identifiers quoted, values as parameters."""
        quote_name = connection.ops.quote_name
        table, key, value = quote_name(self._table), quote_name("cache_key"), quote_name("value")
        expires = quote_name("expires")
        select = f"SELECT {value}, {expires} FROM {table} WHERE {key} = %s"  # noqa: S608
        update = f"UPDATE {table} SET {value} = %s WHERE {key} = %s"  # noqa: S608
        if connection.features.has_select_for_update:
            return None, f"{select} FOR UPDATE", update
        # SQLite: a write that changes nothing takes the database's write lock first.
        return f"UPDATE {table} SET {expires} = {expires} WHERE {key} = %s", select, update  # noqa: S608

    def _expires(self, connection: Any, expires: Any) -> Any:
        """The `expires` column as Django's `get` reads it (aware or naive, per USE_TZ)."""
        expression = models.Expression(output_field=models.DateTimeField())
        converters = connection.ops.get_db_converters(expression)
        for converter in converters + expression.get_db_converters(connection):
            expires = converter(expires, expression, connection)
        return expires

    def _decode(self, connection: Any, stored: Any) -> Any:
        """A value column as `DatabaseCache.get_many` decodes it."""
        return pickle.loads(base64.b64decode(connection.ops.process_clob(stored).encode()))  # noqa: S301

    def _encode(self, value: Any) -> str:
        """A value as `DatabaseCache._base_set` stores it."""
        return base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
