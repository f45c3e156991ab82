import json
import logging

import pytest

from config.logging import JsonFormatter, RequestIdFilter
from tests.conftest import generate


@pytest.mark.django_db
def test_metrics_count_answers_refusals_and_latency(client, alice_key, settings):
    settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE = 1
    generate(client, alice_key)
    generate(client, alice_key)  # refused
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'animeapi_api_responses_total{code="",endpoint="generate",status="200"}' in text
    assert 'animeapi_api_responses_total{code="RATE_LIMIT_EXCEEDED",endpoint="generate",status="429"}' in text
    assert 'animeapi_rate_limit_refusals_total{code="RATE_LIMIT_EXCEEDED"}' in text
    assert 'animeapi_generation_seconds_count{backend="preview",stage="total"}' in text
    assert 'animeapi_queue_depth{queue="generate"}' in text


def test_metrics_are_guarded(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert response.status_code == 200


def test_json_log_lines_carry_the_request_id():
    from config.logging import request_id_var

    record = logging.LogRecord("generation", logging.WARNING, __file__, 1, "failed %s", ("abc",), None)
    token = request_id_var.set("req-123")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed abc" and line["request_id"] == "req-123" and line["level"] == "WARNING"
