"""Prometheus metrics, served at /metrics.

Under gunicorn with several worker processes set PROMETHEUS_MULTIPROC_DIR (an empty directory,
cleared at start; config/gunicorn.py does) so every process's counts are summed.
"""

import ipaddress
import os

from django.conf import settings
from django.http import HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY

API_RESPONSES = Counter("animeapi_api_responses_total", "API answers by endpoint, status and code",
                        ["endpoint", "status", "code"])
GENERATION_SECONDS = Histogram(
    "animeapi_generation_seconds", "Generation latency by backend and stage (queue, generate, total)",
    ["backend", "stage"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 6, 8, 12, 20, 30, 60),
)
REFUNDS = Counter("animeapi_refunds_total", "Generations failed and refunded, by error code", ["code"])
RATE_LIMIT_REFUSALS = Counter("animeapi_rate_limit_refusals_total", "429s by code", ["code"])
STRIPE_EVENTS = Counter("animeapi_stripe_events_total", "Stripe webhook events by type and outcome",
                        ["type", "outcome"])


class QueueDepthCollector:
    """Messages waiting on the Celery `generate` queue, read from Redis at scrape time."""

    def collect(self):
        gauge = GaugeMetricFamily("animeapi_queue_depth", "Tasks waiting on a Celery queue", labels=["queue"])
        if settings.REDIS_URL:
            try:
                from django_redis import get_redis_connection

                gauge.add_metric(["generate"], get_redis_connection("default").llen("generate"))
            except Exception:
                pass  # Redis down: /readyz says so; the scrape still answers
        yield gauge


def _registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(QueueDepthCollector())
        return registry
    return REGISTRY


if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    REGISTRY.register(QueueDepthCollector())


def _allowed(request) -> bool:
    """A bearer METRICS_TOKEN when one is set; otherwise only METRICS_ALLOWED_NETWORKS may scrape."""
    if settings.METRICS_TOKEN:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and constant_time_compare(token.strip(), settings.METRICS_TOKEN)
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in settings.METRICS_ALLOWED_NETWORKS)


@require_GET
def metrics(request):
    if not _allowed(request):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
