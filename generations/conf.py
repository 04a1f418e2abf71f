"""The `GENERATIONS` settings dict: each key's default, type and bounds, checked on read and
by `manage.py check` (generations.E004); the rules between keys are in generations.checks."""

from collections.abc import Sequence
from datetime import timedelta

from rotate.app_settings import AppSettings, Setting

_ZERO = timedelta(0)


def _host_names_problem(hosts: Sequence[object]) -> str | None:
    return None if all(isinstance(host, str) for host in hosts) else "must hold host names"


def _delays_problem(delays: Sequence[object]) -> str | None:
    if all(isinstance(delay, timedelta) and delay > _ZERO for delay in delays):
        return None
    return "must hold positive timedeltas"


DEFAULTS = {
    # Storage and downloads
    "STORAGE_ALIAS": Setting("default", doc="The `STORAGES` alias that holds the videos."),
    "RETENTION": Setting(
        timedelta(hours=1),
        above=_ZERO,
        doc="How long a video is served after its generation was created.",
    ),
    "READ_CHUNK_SIZE": Setting(
        4 * 1024 * 1024,
        minimum=1,
        doc="Bytes read from storage at a time while streaming under WSGI; a download "
        "holds about two such chunks. ASGI servers read hops sized to the client's pace.",
    ),
    "DOWNLOAD_DEADLINE": Setting(
        timedelta(minutes=30),
        above=_ZERO,
        doc="The longest a download may run; it is aborted past this.",
    ),
    "MAX_CONCURRENT_DOWNLOADS": Setting(
        8,
        minimum=1,
        doc="Downloads (E1, E2, E3 bodies) one API key may stream at once, counted in the "
        'cache named by ROTATE["THROTTLE_CACHE"] (shared by every process); past it, 429.',
    ),
    "MAX_CONCURRENT_CREATES": Setting(
        2,
        minimum=1,
        doc="Bulk creates (E6) one API key may run at once, counted like downloads; past it, "
        "429. Each holds a server thread while its images are fetched.",
    ),
    "MAX_LONG_REQUESTS": Setting(
        None,
        kind=(int, type(None)),
        minimum=1,
        doc="Streamed downloads and bulk creates one process runs at once under WSGI, where "
        "each holds a server thread for as long as its client reads or its images take "
        "(None: no cap). Set it below the threads per process, so that clients that stop "
        "reading and images that stall leave threads for other requests; past it, 429.",
    ),
    "MAX_DOWNLOAD_IDS": Setting(
        100, minimum=1, maximum=100, doc="Ids per download request (the contract's maximum)."
    ),
    "LINK_TTL": Setting(
        timedelta(minutes=5),
        above=_ZERO,
        doc="How long a signed download link (E7) works; it also stops with its key.",
    ),
    # The expiry sweep
    "PURGE_GRACE": Setting(
        timedelta(minutes=45),
        above=_ZERO,
        doc="Files are deleted this long after expiry; longer than DOWNLOAD_DEADLINE "
        "(generations.E002), so a download that started before expiry always finishes "
        "before its file goes.",
    ),
    "PURGE_BATCH_SIZE": Setting(200, minimum=1, doc="Rows the expiry sweep claims per batch."),
    "PURGE_TIME_LIMIT": Setting(
        timedelta(seconds=50), above=_ZERO, doc="The expiry sweep's wall-clock budget per run."
    ),
    "PURGE_LEASE": Setting(
        timedelta(minutes=10),
        above=_ZERO,
        doc="How long a claimed row is reserved for the worker that claimed it.",
    ),
    "PURGE_RETRY_BACKOFF": Setting(
        timedelta(minutes=1),
        minimum=_ZERO,
        doc="The first retry delay after a failed storage delete (doubling per attempt, "
        "capped at an hour).",
    ),
    # S3 reads (when the storage is django-storages' S3Storage)
    "S3_CONNECT_TIMEOUT": Setting(
        timedelta(seconds=5), above=_ZERO, doc="Socket connect timeout of every S3 request."
    ),
    "S3_READ_TIMEOUT": Setting(
        timedelta(seconds=20), above=_ZERO, doc="Socket read timeout of every S3 request."
    ),
    "S3_READ_ATTEMPTS": Setting(
        4, minimum=1, doc="Attempts per object without progress before a read gives up."
    ),
    "S3_RETRY_BACKOFF": Setting(
        timedelta(milliseconds=100),
        minimum=_ZERO,
        doc="The first pause between S3 read attempts (doubling).",
    ),
    "S3_PREFETCH": Setting(
        32,
        minimum=0,
        doc="At most how many of the next objects are requested while one streams, so "
        "per-request latency hides behind transfers even for small objects. Only their "
        "headers are held, and a download asks for as many as twice the latency covers at "
        "its pace: large objects or slow clients use few.",
    ),
    "S3_MAX_CONNECTIONS": Setting(
        128,
        minimum=1,
        doc="S3 connections kept open per process (a download uses up to 1 + S3_PREFETCH).",
    ),
    # Bulk create (E6, contract §9)
    "MAX_BULK_GENERATIONS": Setting(
        600, minimum=1, maximum=600, doc="Items per request (the contract's maximum)."
    ),
    "CREDITS_PER_GENERATION": Setting(
        5, minimum=0, doc="The credits each created generation costs."
    ),
    "INTAKE_REQUEST_BUDGET": Setting(
        timedelta(seconds=90),
        above=_ZERO,
        doc="Items whose fetch has not started this long after the request began fail with "
        "`image_timeout`, so one request holds a server thread for at most this plus one "
        "fetch (INTAKE_TOTAL_TIMEOUT), whatever its 600 URLs do.",
    ),
    # Image intake (generations.intake)
    "INTAKE_ALLOWED_HOSTS": Setting(
        (),
        kind=(list, tuple),
        validate=_host_names_problem,
        doc="Host names whose addresses are not checked (a site's own asset server; exact "
        "names, case-insensitive).",
    ),
    "INTAKE_CONCURRENCY": Setting(16, minimum=1, doc="Images fetched at once per request."),
    "INTAKE_CONNECT_TIMEOUT": Setting(
        timedelta(seconds=5), above=_ZERO, doc="Connect timeout of one image fetch."
    ),
    "INTAKE_READ_TIMEOUT": Setting(
        timedelta(seconds=10), above=_ZERO, doc="Read timeout of one image fetch."
    ),
    "INTAKE_TOTAL_TIMEOUT": Setting(
        timedelta(seconds=30), above=_ZERO, doc="The longest one image fetch may take."
    ),
    "INTAKE_MAX_BYTES": Setting(20 * 1000 * 1000, minimum=1, doc="The largest image fetched."),
    "INTAKE_MAX_REDIRECTS": Setting(3, minimum=0, doc="Redirects followed per image fetch."),
    "INTAKE_MAX_PIXELS": Setting(
        40 * 1000 * 1000, minimum=1, doc="The largest image decoded, in pixels."
    ),
    "INTAKE_MAX_SIDE": Setting(10_000, minimum=1, doc="The longest side of an image decoded."),
    "INTAKE_DECODE_PIXELS": Setting(
        100 * 1000 * 1000,
        minimum=1,
        doc="Pixels decoded at once per process, over all requests (a decoded 40 MP image "
        "holds ~160 MB): the fetches run INTAKE_CONCURRENCY at a time, the decodes within this.",
    ),
    # Webhooks (generations.webhooks, contract §12)
    "WEBHOOK_TIMEOUT": Setting(
        timedelta(seconds=15),
        above=_ZERO,
        doc="The longest one delivery attempt may take, name lookup to response head; past "
        "it the attempt fails and is retried.",
    ),
    "WEBHOOK_RETRY_SCHEDULE": Setting(
        (
            timedelta(seconds=5),
            timedelta(minutes=5),
            timedelta(minutes=30),
            timedelta(hours=2),
            timedelta(hours=5),
            timedelta(hours=10),
            timedelta(hours=24),
        ),
        kind=(list, tuple),
        validate=_delays_problem,
        doc="The pauses before each retry of a failed delivery; once spent, it is given up.",
    ),
    "WEBHOOK_QUEUE_AHEAD": Setting(
        timedelta(minutes=1),
        minimum=_ZERO,
        doc="A retry due within this is queued with a countdown; a later one is queued by "
        "the webhook sweep when due (the database holds the schedule, not the broker).",
    ),
    "WEBHOOK_QUEUE": Setting(
        None,
        kind=(str, type(None)),
        doc="The Celery queue of webhook deliveries (None: the default queue). A queue of "
        "their own, served by its own worker, keeps a slow receiver from holding a worker "
        "that renders.",
    ),
    "WEBHOOK_SECRET_OVERLAP": Setting(
        timedelta(hours=24),
        minimum=_ZERO,
        doc="After a rotation, the replaced secret keeps signing (a second signature) this long.",
    ),
    # The renderer (generations.rendering)
    "RENDERER": Setting(
        "generations.renderers.turntable.TurntableRenderer",
        doc="A dotted path to a Renderer subclass.",
    ),
    "RENDERER_OPTIONS": Setting({}, doc="The keyword arguments the renderer is built with."),
    "RENDER_TIME_LIMIT": Setting(
        timedelta(minutes=10),
        above=_ZERO,
        doc="One render attempt may run this long (checked by the render between frames, and "
        "as Celery's soft/hard time limits where the pool enforces them).",
    ),
    "RENDER_MAX_ATTEMPTS": Setting(
        3,
        minimum=1,
        doc="Attempts per generation (a transient failure or a lost worker tries again, after "
        "RENDER_RETRY_BACKOFF, doubling).",
    ),
    "RENDER_RETRY_BACKOFF": Setting(
        timedelta(seconds=10), minimum=_ZERO, doc="The first pause before a render retry."
    ),
    "RENDER_UNCLAIMED_AFTER": Setting(
        timedelta(minutes=2),
        above=_ZERO,
        doc="A `starting` row not claimed for this long is queued again by the watchdog.",
    ),
    "RENDER_PROGRESS_INTERVAL": Setting(
        timedelta(seconds=1),
        minimum=_ZERO,
        doc="Progress is written at most once per interval.",
    ),
}

generations_settings = AppSettings("GENERATIONS", DEFAULTS)

# Celery's soft and hard time limits of a render task, past RENDER_TIME_LIMIT (which the
# render checks itself between frames). The watchdog gives a render back only once the hard
# limit has passed, when a pool that enforces it has ended the old attempt.
SOFT_LIMIT_MARGIN = timedelta(seconds=15)
HARD_LIMIT_MARGIN = timedelta(seconds=45)
