"""The admin's login is limited like the site's (allauth's failed-login limits, per IP and per
address), and a login page answers 503, not 500, while Redis is down."""

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

from accounts.models import User

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin password 123"
TOO_MANY = "Too many failed login attempts"
# Nothing listens on port 1: every cache call fails with "connection refused" at once.
DEAD_REDIS = {"default": {
    "BACKEND": "django_redis.cache.RedisCache",
    "LOCATION": "redis://127.0.0.1:1/0",
    "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient", "SOCKET_CONNECT_TIMEOUT": 1},
}}


@pytest.fixture(autouse=True)
def _fresh_login_limits():
    """allauth keeps its failed-login counts in the cache; each test starts without any."""
    def forget():
        if hasattr(cache, "delete_pattern"):
            cache.delete_pattern("allauth:rl:*")  # not FLUSHDB: the Celery broker shares the database
        else:
            cache.clear()
    forget()
    yield
    forget()


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser(email=ADMIN_EMAIL, password=ADMIN_PASSWORD)


def admin_login(client, email, password, *, ip="198.51.100.7"):
    return client.post("/admin/login/?next=/admin/", {"username": email, "password": password, "next": "/admin/"},
                       REMOTE_ADDR=ip)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_the_right_password_logs_in(admin_user):
    client = Client()
    response = admin_login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert logged_in(client)


def test_after_30_wrong_passwords_the_right_one_is_refused(admin_user):
    client = Client()
    for _ in range(30):
        response = admin_login(client, ADMIN_EMAIL, "guess")
        assert response.status_code == 200 and not logged_in(client)
    response = admin_login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert response.status_code == 200
    assert TOO_MANY in response.content.decode()
    assert not logged_in(client)
    assert Client().get("/admin/").status_code == 302  # still the login page for everyone else


def test_the_limit_follows_the_account_across_addresses(admin_user):
    for attempt in range(5):
        admin_login(Client(), ADMIN_EMAIL, "guess", ip=f"203.0.113.{attempt + 1}")
    client = Client()
    response = admin_login(client, ADMIN_EMAIL, ADMIN_PASSWORD, ip="192.0.2.99")
    assert TOO_MANY in response.content.decode() and not logged_in(client)


def test_the_limit_follows_the_address_across_accounts(admin_user):
    for attempt in range(10):
        admin_login(Client(), f"someone{attempt}@example.com", "guess")
    client = Client()
    response = admin_login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert TOO_MANY in response.content.decode() and not logged_in(client)
    # Another address is not held back by this one's failures.
    response = admin_login(client, ADMIN_EMAIL, ADMIN_PASSWORD, ip="192.0.2.50")
    assert response.status_code == 302 and logged_in(client)


@pytest.mark.parametrize("path,form", [
    ("/accounts/login/", {"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
    ("/admin/login/", {"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
])
def test_a_login_while_redis_is_down_answers_a_clear_503_page(admin_user, path, form):
    client = Client()
    with override_settings(CACHES=DEAD_REDIS):
        response = client.post(path, form)
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response["Content-Type"].startswith("text/html")
    assert "Temporarily unavailable" in response.content.decode()
    assert not logged_in(client)
