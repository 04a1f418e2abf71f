"""gunicorn configuration: threaded workers, so a long download never hits a worker timeout.

The sync worker kills any request longer than `timeout`; gthread workers only use the
timeout for the worker heartbeat, and each thread holds one download. The worker class is
gunicorn's gthread where only a complete request head gets a thread (config/gunicorn_worker.py):
idle and slow-header connections, however many, wait in the worker's poller, not in its
threads, and are closed when their head is not complete 10 s after they connected.
"""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "config.gunicorn_worker.HeadFirstThreadWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", min(4, multiprocessing.cpu_count())))
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
timeout = 60
graceful_timeout = 30
# A gthread worker accepts up to `worker_connections` and queues what its threads cannot take
# yet: behind long downloads such a request waited 98 s while the other worker had a thread
# free (2 workers × 2 threads, 3 slow downloads, gunicorn's default of 1000). Accepting no
# more than its threads leaves the rest in the listen backlog for whichever worker frees a
# thread first. Keep-alive would hold connections beyond the threads, so it is off: each
# response closes its connection (nginx reconnects on loopback in microseconds).
# Connections still waiting for their request head hold no thread and do not count here.
worker_connections = threads
keepalive = 0
accesslog = "-"
# The path without the query string: a raw key pasted into `?api_key=` or a signed link's
# token must never reach the access log. %(U)s is the path, %(r)s would be the request line.
access_log_format = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(D)sus "%({x-request-id}o)s"'
# The path is decoded: a `%0a` in it would start a forged line. Every field is escaped
# (control characters, quotes, backslashes, non-ASCII as \xHH), as nginx's access log does.
logger_class = "config.gunicorn_logging.EscapingLogger"
# The skipped-ID headers can hold 100 IDs of 19 digits each.
limit_request_field_size = 16384
# gunicorn 27's runtime control socket (`gunicornc`) is one path per user
# ($HOME/.gunicorn/gunicorn.ctl): every gunicorn of a host would share it, and nothing here uses it.
control_socket_disable = True
