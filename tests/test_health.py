import pytest
from django.core.cache import cache

from config.health import HEARTBEAT_KEY


def test_healthz_is_alive_without_auth(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_every_part_in_eager_mode(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "redis": "ok", "broker": "eager", "storage": "ok", "worker": "eager"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_readyz_sees_the_worker_heartbeat_and_fails_without_it(client, celery_worker, settings):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["worker"].startswith("seen")
    assert response.json()["checks"]["broker"] == "ok"

    cache.delete(HEARTBEAT_KEY)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["checks"]["worker"] == "failing"
    assert "redis://" not in response.content.decode()
