"""The web server's settings, read by `bin/run` and the Docker image (``gunicorn -c gunicorn.conf.py``).

Threaded workers (gthread), not sync ones. A sync worker serves one connection at a time and blocks in
``recv()`` until that connection sends its request: a browser's speculative (preconnected) socket that
never sends one, or a request whose body never completes, held one of the two sync workers for as long
as the browser kept the socket open (issue 17 item 10: cluster pages hung 61 s, every other request
queued behind them, all released when the idle socket finally carried the previous page's lease-release
POST). A gthread worker hands a silent connection back to its poller after a few seconds and serves other
connections on its other threads meanwhile.

FACECURATE_WEB_WORKERS (processes, default 2) and FACECURATE_WEB_THREADS (threads each, default 8) size it.
"""
import os

worker_class = "gthread"
workers = int(os.environ.get("FACECURATE_WEB_WORKERS", "2"))
threads = int(os.environ.get("FACECURATE_WEB_THREADS", "8"))
# Seconds a worker may go without beating before the arbiter restarts it (uploads and exports run long).
timeout = 300
# Seconds an idle kept-alive connection stays open (it waits in the poller, holding no thread): longer
# than an annotator's look at a cluster, so the browser's next request rarely meets a socket just closed.
keepalive = 30
#: Seconds a thread waits for a new connection's first bytes before handing it back to the poller.
#: gunicorn 27's gthread waits 5 s (a module constant): with 20 annotators each page's speculative
#: connection held a thread for 5 s and requests queued behind them (bench/review_load.py).
FIRST_BYTE_WAIT = 0.25


def post_worker_init(worker):
    """Import what requests need before the worker takes one. The first request each worker served paid
    for importing the whole URL map (2-3 s on a loaded machine); worse, the first review action that
    moves faces imported the priority rule (pipeline.uncertainty, which imports torch: 5 s and more)
    inside its transaction, so SQLite's write lock (PostgreSQL: the cluster's row lock) was held all that
    time and every lease, confirm and release POST of every annotator waited behind it."""
    from django.urls import get_resolver
    from gunicorn.workers import gthread

    from facecurate.runs.services.priority import preload

    if hasattr(gthread, "DEFAULT_WORKER_DATA_TIMEOUT"):
        gthread.DEFAULT_WORKER_DATA_TIMEOUT = FIRST_BYTE_WAIT

    _ = get_resolver().url_patterns
    preload()
