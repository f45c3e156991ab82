"""The daily quota's unit has one owner at a time: the request, then the generation it creates."""

import datetime
from decimal import Decimal

import pytest

from generation import limits, quota
from generation.backends.base import BackendError
from generation.backends.preview import PreviewBackend
from generation.models import Generation
from tests.conftest import generate, make_user


class ExplodingBackend(PreviewBackend):
    def generate(self, request, *, deadline):
        raise BackendError("GPU fell over")


def used_today(user) -> int:
    return limits.daily_used(user_id=user.pk)


def test_a_unit_is_given_back_once_however_often_it_is_released(settings):
    unit = quota.take(user_id=4242, test=False)
    assert limits.daily_used(user_id=4242) == 1
    unit.release()
    unit.release()
    assert limits.daily_used(user_id=4242) == 0 and unit.released


def test_a_unit_adopted_by_a_generation_is_not_released_by_the_request():
    unit = quota.take(user_id=4243, test=False)
    assert unit.adopt() == datetime.datetime.now(datetime.UTC).date()
    unit.release()
    assert limits.daily_used(user_id=4243) == 1 and not unit.released


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{"prompt": "a fox"}, {"prompt": "a fox", "async": True}])
def test_a_failed_generation_gives_its_unit_back_exactly_once(client, alice, alice_key, monkeypatch, body):
    monkeypatch.setattr("generation.rendering.get_backend", lambda name=None: ExplodingBackend())
    response = generate(client, alice_key, body)
    assert response.status_code in (500, 202)
    assert Generation.objects.get().status == "failed"
    assert used_today(alice) == 0  # not -1: the pipeline gave it back, the view did not again


@pytest.mark.django_db
def test_a_delivered_image_keeps_its_unit_and_a_refused_request_does_not(client, alice, alice_key):
    assert generate(client, alice_key, {"prompt": "a fox"}).status_code == 200
    assert used_today(alice) == 1
    assert generate(client, alice_key, {"prompt": ""}).status_code == 400  # no generation created
    assert used_today(alice) == 1


@pytest.mark.django_db
def test_a_402_gives_its_unit_back_once(client, db):
    broke = make_user("broke@example.com", balance="0.005")
    from accounts.apikeys import create_api_key

    _, key = create_api_key(user=broke)
    response = generate(client, key, {"prompt": "a fox"})
    assert response.status_code == 402
    assert Generation.objects.get().quota_day == datetime.datetime.now(datetime.UTC).date()
    assert used_today(broke) == 0
    assert response["X-Daily-Remaining"] == "5000"


@pytest.mark.django_db
def test_the_stale_sweep_gives_back_the_unit_of_a_generation_nobody_finished(alice):
    from generation.charging import GenerationParams, start_generation
    from generation.tasks import expire_stale_generations

    unit = quota.take(user_id=alice.pk, test=False)
    generation = start_generation(user=alice, api_key=None, params=GenerationParams(prompt="a fox"), daily_unit=unit)
    Generation.objects.filter(pk=generation.pk).update(
        created_at=generation.created_at - datetime.timedelta(hours=1))
    assert used_today(alice) == 1
    assert expire_stale_generations() == 1
    assert used_today(alice) == 0
    generation.refresh_from_db()
    assert generation.status == "failed" and generation.cost_usd == Decimal("0")


@pytest.mark.django_db
@pytest.mark.parametrize("crash_at", ["generation.api.parse_generate_request", "generation.charging._charge"])
def test_an_unexpected_crash_before_any_image_gives_the_unit_back(alice, alice_key, monkeypatch, crash_at):
    from django.test import Client

    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(crash_at, crash)
    response = generate(Client(raise_request_exception=False), alice_key, {"prompt": "a fox"})
    assert response.status_code == 500
    assert used_today(alice) == 0
    assert not Generation.objects.exists()  # the charge's transaction was rolled back whole


@pytest.mark.django_db
def test_a_crash_while_rendering_in_the_web_process_refunds_at_once(alice, alice_key, monkeypatch):
    from django.test import Client

    from billing import ledger

    def crash(*args, **kwargs):
        raise RuntimeError("cannot build the backend")

    monkeypatch.setattr("generation.rendering.render_batch", crash)
    response = generate(Client(raise_request_exception=False), alice_key, {"prompt": "a fox"})
    assert response.status_code == 500
    generation = Generation.objects.get()
    assert generation.status == "failed" and "cannot build the backend" in generation.error_detail
    assert ledger.balance(user=alice) == Decimal("1") == ledger.ledger_sum(user=alice)
    assert used_today(alice) == 0
