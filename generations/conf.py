"""The `GENERATIONS` settings dict and its defaults."""

from datetime import timedelta

from rotate.app_settings import AppSettings

DEFAULTS = {
    # The `STORAGES` alias that holds the videos.
    "STORAGE_ALIAS": "default",
    # How long a video is served after its generation was created.
    "RETENTION": timedelta(hours=1),
    # Bytes read from storage at a time while streaming.
    "READ_CHUNK_SIZE": 1024 * 1024,
    # The longest a download may run; it is aborted past this.
    "DOWNLOAD_DEADLINE": timedelta(minutes=30),
    # Downloads (E1, E2, E3 bodies) one API key may stream at once, counted in the cache
    # named by ROTATE["THROTTLE_CACHE"] (shared by every process); past it, 429.
    "MAX_CONCURRENT_DOWNLOADS": 8,
    # Files are deleted this long after expiry; longer than DOWNLOAD_DEADLINE, so a download
    # that started before expiry always finishes before its file goes.
    "PURGE_GRACE": timedelta(minutes=45),
    "MAX_DOWNLOAD_IDS": 100,
    # How long a signed download link (E7) works; it also stops with its key.
    "LINK_TTL": timedelta(minutes=5),
    # The expiry sweep: rows per batch, wall-clock budget per run, how long a claimed row is
    # reserved for the worker that claimed it, and the first retry delay after a failed
    # storage delete (doubling per attempt, capped at an hour).
    "PURGE_BATCH_SIZE": 200,
    "PURGE_TIME_LIMIT": timedelta(seconds=50),
    "PURGE_LEASE": timedelta(minutes=10),
    "PURGE_RETRY_BACKOFF": timedelta(minutes=1),
    # S3 reads (when the storage is django-storages' S3Storage): socket timeouts of every
    # request; attempts per object without progress before a read gives up, and the first
    # pause between them (doubling); at most how many of the next objects are requested
    # while one streams, so per-request latency hides behind transfers even for small
    # objects (only their headers are held; a download requests as many as twice the
    # latency covers at its pace, so large objects or slow clients use few: 20 ms per
    # request behind 256 KiB objects read at ~400 objects/s takes 16, see
    # bench/s3_latency.py); and the connections kept open per process (a download uses up
    # to 1 + S3_PREFETCH).
    "S3_CONNECT_TIMEOUT": timedelta(seconds=5),
    "S3_READ_TIMEOUT": timedelta(seconds=20),
    "S3_READ_ATTEMPTS": 4,
    "S3_RETRY_BACKOFF": timedelta(milliseconds=100),
    "S3_PREFETCH": 32,
    "S3_MAX_CONNECTIONS": 128,
    # Bulk create (E6, contract §9): items per request, and the credits each created
    # generation costs. Items whose fetch has not started INTAKE_REQUEST_BUDGET after the
    # request began fail with `image_timeout`, so one request holds a server thread for at
    # most that plus one fetch (INTAKE_TOTAL_TIMEOUT), whatever its 600 URLs do.
    "MAX_BULK_GENERATIONS": 600,
    "CREDITS_PER_GENERATION": 5,
    "INTAKE_REQUEST_BUDGET": timedelta(seconds=90),
    # Image intake (generations.intake): host names whose addresses are not checked (a
    # site's own asset server; exact names, case-insensitive); images fetched at once per
    # request; the limits of one fetch; the largest image decoded.
    "INTAKE_ALLOWED_HOSTS": (),
    "INTAKE_CONCURRENCY": 16,
    "INTAKE_CONNECT_TIMEOUT": timedelta(seconds=5),
    "INTAKE_READ_TIMEOUT": timedelta(seconds=10),
    "INTAKE_TOTAL_TIMEOUT": timedelta(seconds=30),
    "INTAKE_MAX_BYTES": 20 * 1000 * 1000,
    "INTAKE_MAX_REDIRECTS": 3,
    "INTAKE_MAX_PIXELS": 40 * 1000 * 1000,
    "INTAKE_MAX_SIDE": 10_000,
    # Pixels decoded at once per process, over all requests (a decoded 40 MP image holds
    # ~160 MB): the fetches run INTAKE_CONCURRENCY at a time, the decodes within this.
    "INTAKE_DECODE_PIXELS": 100 * 1000 * 1000,
    # The renderer (generations.rendering): a dotted path to a Renderer subclass, and the
    # keyword arguments it is built with.
    "RENDERER": "generations.renderers.turntable.TurntableRenderer",
    "RENDERER_OPTIONS": {},
    # One render attempt may run this long (checked by the render between frames, and as
    # Celery's soft/hard time limits where the pool enforces them); attempts per generation
    # (a transient failure or a lost worker tries again, after RENDER_RETRY_BACKOFF, doubling);
    # a `starting` row not claimed for RENDER_UNCLAIMED_AFTER is queued again by the watchdog;
    # progress is written at most once per RENDER_PROGRESS_INTERVAL.
    "RENDER_TIME_LIMIT": timedelta(minutes=10),
    "RENDER_MAX_ATTEMPTS": 3,
    "RENDER_RETRY_BACKOFF": timedelta(seconds=10),
    "RENDER_UNCLAIMED_AFTER": timedelta(minutes=2),
    "RENDER_PROGRESS_INTERVAL": timedelta(seconds=1),
}

generations_settings = AppSettings("GENERATIONS", DEFAULTS)
