"""Celery worker start-up: load the generation model (and the image classifier) once per process
that runs tasks, before the first task, so no paid request waits for a model to load.

config/celery.py imports this module for its signal handlers. Which signal does the work depends
on the pool: prefork children each load their own copy after the fork (`worker_process_init`;
CUDA cannot cross a fork, so the parent must never load it), the solo pool sends the same signal
in the main process it runs tasks in, and the threads pool, which sends none, loads at
`worker_init`. With prefork, a child's start must be allowed to take that long: see
CELERY_WORKER_PROC_ALIVE_TIMEOUT.
"""

import logging

from celery import signals

log = logging.getLogger(__name__)


@signals.worker_process_init.connect
def _load_in_pool_process(**kwargs):
    load_generation_model()


@signals.worker_init.connect
def _load_in_main_process(sender=None, **kwargs):
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool as PreforkPool
    from celery.concurrency.solo import TaskPool as SoloPool

    pool = getattr(sender, "pool_cls", None)
    pool_class = get_implementation(pool) if isinstance(pool, str) else pool
    if isinstance(pool_class, type) and issubclass(pool_class, (PreforkPool, SoloPool)):
        return  # they send worker_process_init in the process that runs tasks
    load_generation_model()


def load_generation_model() -> None:
    """Warm the configured backend when it is the local GPU one, and the image classifier when the
    `[safety]` extra is installed. Any error propagates: a worker that cannot load its model must
    not take tasks."""
    # Imported here, not at the top: config/celery.py imports this module while Django's settings
    # are still loading, before any model may be imported.
    from django.conf import settings

    from . import safety
    from .backends import get_backend

    if settings.GENERATION_BACKEND == "diffusers":
        seconds = get_backend(settings.GENERATION_BACKEND).warm_up()
        log.info("generation model ready (warm-up %.1f s)", seconds)
    if safety.warm_up():
        log.info("image classifier ready")
