"""gunicorn settings for production: ``gunicorn -c python:synthstudio.gunicorn_conf synthstudio.wsgi``.

Workers, threads and the bind address come from the command line (or ``GUNICORN_CMD_ARGS``) as usual. This file adds
what the application needs:

- ``preload_app``: Django and everything it imports load once, in the master; the workers fork with them.
- Garbage collection. A full (generation 2) collection walks every object the process tracks; in a worker holding
  Django and its imports one took 40-140 ms (measured in-process at 1M items), stalling every request that worker was
  serving, which made it a large part of the review queue's latency tail. As the ``gc`` module advises for forking
  servers, the master loads the application with automatic collection off and freezes what it loaded before
  forking: frozen objects sit in a permanent generation that collections skip, so a worker's full collection only
  walks what the worker itself allocated. Collection is on again in the master once it is ready and in every worker.
- The URLconf is imported in the master too, before the freeze. Django imports it on the first request, and with it
  every view and what the views use (the selection code brings numpy, SciPy, scikit-learn and modAL): done per worker,
  that made each worker's first requests slow and left a large unfrozen heap for its collections to walk (measured
  with bench/load.py at 1M items: server-side next-item p99 174-189 ms before, see bench/RESULTS.md).
"""
import gc

preload_app = True

# Off while the master imports the application; turned on again in ``when_ready``.
gc.disable()


def when_ready(server):
    from django.urls import get_resolver

    get_resolver().url_patterns  # imports every view module and its dependencies
    gc.freeze()
    gc.enable()


def pre_fork(server, worker):
    # Whatever the master allocated since (a respawn much later, say) is frozen too before the next fork.
    gc.freeze()


def post_fork(server, worker):
    gc.enable()
