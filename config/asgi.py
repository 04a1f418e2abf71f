"""ASGI entry point, served by uvicorn:

    python -m uvicorn config.asgi:application --host 127.0.0.1 --port 8000 \
        --lifespan off --timeout-graceful-shutdown 30

`--workers N` (or WEB_CONCURRENCY) adds processes; `--lifespan off` because Django speaks
no lifespan protocol; without a graceful-shutdown timeout a restart waits for the longest
download (gunicorn's `graceful_timeout` is 30 s too). Downloads stream as async iterators
under ASGI (`generations.asgi_stream`), read in worker threads in hops sized to each
client's pace, so memory stays flat and bounded per process.
"""

from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler

from config.settings_module import require_settings_module
from rotate.asgi import ApiBodyLimit

require_settings_module()
# Django sends streamed bodies in 64 KiB messages and slices (copies) larger parts to that
# size. Downloads read hops of up to this size, sized to the client's pace
# (`generations.asgi_stream`): a fast client takes few large messages (each costs a thread
# handoff and a pass through the event loop), a slow one is still read 64 KiB at a time.
ASGIHandler.chunk_size = 8 * 1024 * 1024
# Django reads (and spools to disk) a whole body before any view runs: multipart and
# oversized API bodies are refused before that, unread (rotate.asgi).
application = ApiBodyLimit(get_asgi_application())
