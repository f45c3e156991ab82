"""Where a sync generation renders: in the web process for network-only backends, on a worker
for GPU backends and for images the classifier must check."""

import pytest

from generation import dispatch, safety
from tests.conftest import generate


def test_network_only_backends_render_in_the_web_process(settings):
    settings.GENERATION_RENDER_IN_WEB = True
    assert dispatch.renders_in_web("runware") and dispatch.renders_in_web("preview")
    assert not dispatch.renders_in_web("diffusers")
    settings.GENERATION_RENDER_IN_WEB = False
    assert not dispatch.renders_in_web("runware")


def test_images_the_classifier_checks_go_to_a_worker(settings):
    settings.GENERATION_RENDER_IN_WEB = True
    assert safety.classifier_installed()  # the test extras install it
    assert not dispatch.renders_in_web("runware", allow_nsfw=False)
    assert dispatch.renders_in_web("runware", allow_nsfw=True)


@pytest.mark.django_db
def test_a_web_rendered_request_sends_no_task(client, alice_key, monkeypatch):
    queued = []
    send = dispatch.run_generation_task.apply_async

    def recording(*args, **kwargs):
        queued.append(args)
        return send(*args, **kwargs)

    monkeypatch.setattr(dispatch.run_generation_task, "apply_async", recording)
    assert generate(client, alice_key, {"prompt": "a fox"}).status_code == 200
    assert queued == []
    # allowNSFW: false is checked by the classifier, on a worker (eager here): it is queued.
    assert generate(client, alice_key, {"prompt": "a fox", "allowNSFW": False}).status_code == 200
    assert len(queued) == 1
