"""The diffusers backend, run for real on the CPU with a tiny random-weight SDXL pipeline: loaded
from a diffusers folder and from a single .safetensors in the layout released checkpoints use,
driven through POST /api/generate like any other backend."""

import importlib
import os
import re
import time
from decimal import Decimal
from http import HTTPStatus
from types import SimpleNamespace

import pytest


def _require(module: str):
    # Under CI the Makefile installs the [gpu] extra: a missing package fails the run, never skips.
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)


torch = _require("torch")
_require("diffusers")
_require("transformers")

from diffusers import StableDiffusionXLPipeline

from billing import ledger
from generation import backends, enhance, worker
from generation.backends import diffusers as diffusers_backend
from generation.backends import sdxl_prompts
from generation.backends.base import BackendError, ImageRequest
from generation.models import Generation
from tests.conftest import error_of, generate
from tests.sdxl_tiny import build_tiny_pipeline, save_single_file
from tests.test_api_generate import PRICE, fetch_image

# Over 100 tokens in the tiny byte-level vocabulary, which spends one per character.
LONG_PROMPT = ("1girl, solo, long silver hair, purple eyes, school uniform, pleated skirt, cherry blossoms, "
               "wind, smile, looking at viewer")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Built once per test run (about a second): the same random weights as a diffusers folder and
    as one SGM-layout .safetensors file."""
    root = tmp_path_factory.mktemp("sdxl-tiny")
    pipe = build_tiny_pipeline(root)
    pipe.save_pretrained(root / "diffusers")
    single_file = save_single_file(pipe, root / "tiny-sdxl.safetensors")
    return SimpleNamespace(pipe=pipe, folder=root / "diffusers", single_file=single_file)


@pytest.fixture
def use_diffusers(settings, tiny_model):
    """Point the settings at the tiny model and build the backend the pipeline will use."""

    def configure(**overrides):
        settings.GENERATION_BACKEND = "diffusers"
        settings.DIFFUSERS_MODEL = str(tiny_model.folder)
        settings.DIFFUSERS_DEVICE = "cpu"
        settings.DIFFUSERS_STEPS = 2
        for name, value in overrides.items():
            setattr(settings, name, value)
        backends.get_backend.cache_clear()
        return backends.get_backend("diffusers")

    yield configure
    backends.get_backend.cache_clear()


@pytest.fixture
def pipeline_calls(monkeypatch):
    """Every StableDiffusionXLPipeline call's keyword arguments, the call itself unchanged."""
    calls = []
    real_call = StableDiffusionXLPipeline.__call__

    def spy(pipe, *args, **kwargs):
        calls.append(kwargs)
        return real_call(pipe, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionXLPipeline, "__call__", spy)
    return calls


def _same_weights(a, b) -> bool:
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.django_db
@pytest.mark.parametrize("orientation,size", [("portrait", (832, 1280)), ("landscape", (1280, 832))])
def test_a_diffusers_folder_renders_a_webp_of_the_requested_size(client, alice, alice_key, use_diffusers,
                                                                  orientation, size):
    use_diffusers()
    response = generate(client, alice_key, {"prompt": "a girl with blue hair", "orientation": orientation})

    assert response.status_code == HTTPStatus.OK, response.content
    body = response.json()
    image = fetch_image(client, body["image_url"])
    assert (image.format, image.size) == ("WEBP", size)
    assert body["model"] == "diffusers"
    assert ledger.balance(user=alice) == Decimal("1") - PRICE
    generation = Generation.objects.get(user=alice)
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.details == {
        "backend": "diffusers", "model": "diffusers", "steps": 2, "CFGScale": 5.0,
        "scheduler": "EulerAncestralDiscreteScheduler", "dtype": "fp32", "device": "cpu",
        "inference_ms": generation.details["inference_ms"],
    }
    xmp = image.info["xmp"].decode()
    assert "<animeapi:steps>2</animeapi:steps>" in xmp
    assert "<animeapi:scheduler>EulerAncestralDiscreteScheduler</animeapi:scheduler>" in xmp


@pytest.mark.django_db
def test_a_single_safetensors_checkpoint_loads_offline_with_a_local_config(client, alice_key, tiny_model,
                                                                            use_diffusers):
    backend = use_diffusers(DIFFUSERS_MODEL=str(tiny_model.single_file), DIFFUSERS_CONFIG=str(tiny_model.folder))

    # diffusers converted the released-checkpoint layout back to exactly the weights saved.
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        assert _same_weights(getattr(backend.pipe, component), getattr(tiny_model.pipe, component)), component
    response = generate(client, alice_key, {"prompt": "a cat", "orientation": "square"})
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["model"] == "tiny-sdxl"
    assert fetch_image(client, response.json()["image_url"]).size == (1024, 1024)


@pytest.mark.django_db
def test_the_same_seed_gives_the_same_pixels_and_another_seed_does_not(client, alice_key, use_diffusers):
    use_diffusers()
    first = generate(client, alice_key, {"prompt": "a fox", "seed": 1234}).json()
    again = generate(client, alice_key, {"prompt": "a fox", "seed": 1234}).json()
    other = generate(client, alice_key, {"prompt": "a fox", "seed": 1235}).json()

    assert first["seed"] == again["seed"] == 1234 and other["seed"] == 1235
    pixels = [fetch_image(client, body["image_url"]).convert("RGB").tobytes() for body in (first, again, other)]
    assert pixels[0] == pixels[1]
    assert pixels[0] != pixels[2]
    assert Generation.objects.filter(seed=1234, status=Generation.Status.SUCCEEDED).count() == 2


@pytest.mark.django_db
def test_a_prompt_over_77_tokens_is_encoded_in_windows_not_truncated(client, alice_key, use_diffusers,
                                                                      pipeline_calls):
    backend = use_diffusers()
    assert len(backend.pipe.tokenizer(LONG_PROMPT).input_ids) > 77

    response = generate(client, alice_key, {"prompt": LONG_PROMPT, "enhance": False})

    assert response.status_code == HTTPStatus.OK, response.content
    (call,) = pipeline_calls
    windows, remainder = divmod(call["prompt_embeds"].shape[1], 77)
    assert windows > 1 and remainder == 0
    assert call["prompt_embeds"].shape[2] == 80  # 32 + 48: the two encoders side by side
    assert call["negative_prompt_embeds"].shape == call["prompt_embeds"].shape
    # Words past the 77th token still change the conditioning.
    changed = LONG_PROMPT.replace("looking at viewer", "looking away")
    assert not torch.equal(sdxl_prompts.encode(backend.pipe, changed, "").prompt_embeds,
                           sdxl_prompts.encode(backend.pipe, LONG_PROMPT, "").prompt_embeds)


def test_windows_end_after_a_comma_rather_than_inside_a_tag():
    comma = 9
    tokens = [1] * 70 + [comma] + [2] * 10  # the comma is the 71st token, within the last 20 of a window
    windows = sdxl_prompts.split_windows(tokens, comma_id=comma)
    assert [len(window) for window in windows] == [71, 10]
    assert windows[0][-1] == comma
    assert sdxl_prompts.split_windows([1] * 160, comma_id=comma) == [[1] * 75, [1] * 75, [1] * 10]
    assert sdxl_prompts.split_windows([], comma_id=comma) == [[]]


@pytest.mark.django_db
def test_the_familys_negative_prompt_is_encoded_and_applied(client, alice_key, use_diffusers, pipeline_calls,
                                                            monkeypatch):
    backend = use_diffusers()
    encoded = []
    real_encode = sdxl_prompts.encode
    monkeypatch.setattr(sdxl_prompts, "encode", lambda pipe, prompt, negative: encoded.append(negative)
                        or real_encode(pipe, prompt, negative))

    response = generate(client, alice_key, {"prompt": "1girl, smile", "enhance": False, "allowNSFW": False})

    assert response.status_code == HTTPStatus.OK, response.content
    negative = enhance.negative_prompt(allow_nsfw=False)
    assert "nsfw" in negative.split(", ")
    assert encoded == [negative]
    (call,) = pipeline_calls
    empty = real_encode(backend.pipe, "1girl, smile", "")
    assert not torch.equal(call["negative_prompt_embeds"], empty.negative_prompt_embeds)
    assert torch.equal(call["negative_prompt_embeds"], real_encode(backend.pipe, "1girl, smile", negative)
                       .negative_prompt_embeds)


@pytest.mark.django_db
def test_a_crash_inside_the_pipeline_is_refunded(client, alice, alice_key, use_diffusers, monkeypatch):
    use_diffusers()

    def crash(pipe, *args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(StableDiffusionXLPipeline, "__call__", crash)
    response = generate(client, alice_key, {"prompt": "a girl"})

    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert error_of(response) == {"error": "Generation failed", "code": "GENERATION_FAILED"}
    assert ledger.balance(user=alice) == Decimal("1") == ledger.ledger_sum(user=alice)
    generation = Generation.objects.get(user=alice)
    assert generation.status == Generation.Status.FAILED
    assert "RuntimeError: CUDA error" in generation.error_detail and "[pipeline]" in generation.error_detail


@pytest.mark.django_db
def test_the_deadline_stops_the_run_between_steps(use_diffusers, pipeline_calls):
    backend = use_diffusers(DIFFUSERS_STEPS=20)
    request = ImageRequest(prompt="a girl", negative_prompt="", width=832, height=1280, allow_nsfw=True, seed=1)

    started = time.monotonic()
    with pytest.raises(BackendError) as failure:
        backend.generate(request, deadline=time.monotonic() + 0.05)

    assert failure.value.provider_code == "timeout"
    # Stopped between steps, well before the 20th (how many fit in 50 ms depends on the machine).
    stopped_after = int(re.search(r"after step (\d+) of 20", failure.value.detail).group(1))
    assert 1 <= stopped_after < 20
    assert time.monotonic() - started < 10  # not the 20 steps and the VAE decode
    with pytest.raises(BackendError) as late:
        backend.generate(request, deadline=time.monotonic() - 1)
    assert late.value.provider_code == "deadline"
    assert len(pipeline_calls) == 1


@pytest.mark.django_db
def test_warm_up_renders_once_and_the_worker_runs_it_at_start(use_diffusers, pipeline_calls, settings):
    backend = use_diffusers()

    assert backend.warm_up() > 0
    assert [(call["width"], call["height"], call["num_inference_steps"]) for call in pipeline_calls] == [(832, 1280, 2)]

    worker.load_generation_model()  # what worker_process_init / worker_init call
    assert len(pipeline_calls) == 2
    assert backends.get_backend("diffusers") is backend  # the one the pipeline will use, not a second copy


def test_fp16_decodes_with_an_upcast_vae_and_schedulers_take_webui_names(tiny_model):
    pipe = diffusers_backend.load_pipeline(str(tiny_model.folder), config="", dtype=torch.float16, vae="")
    assert pipe.unet.dtype == torch.float16 and pipe.vae.config.force_upcast

    config = pipe.scheduler.config
    assert type(diffusers_backend.make_scheduler("Euler a", config)).__name__ == "EulerAncestralDiscreteScheduler"
    karras = diffusers_backend.make_scheduler("DPM++ 2M Karras", config)
    assert type(karras).__name__ == "DPMSolverMultistepScheduler" and karras.config.use_karras_sigmas
    vpred = diffusers_backend.make_scheduler("EulerDiscreteScheduler", config, prediction_type="v_prediction")
    assert vpred.config.prediction_type == "v_prediction" and vpred.config.rescale_betas_zero_snr
    with pytest.raises(BackendError):
        diffusers_backend.make_scheduler("Nope", config)


def test_a_missing_model_setting_is_a_configuration_error(settings):
    settings.DIFFUSERS_MODEL = ""
    with pytest.raises(BackendError) as failure:
        diffusers_backend.DiffusersBackend()
    assert failure.value.provider_code == "configuration"


@pytest.mark.django_db
def test_n_images_run_as_one_batch_each_with_its_own_seed(client, alice, alice_key, use_diffusers, pipeline_calls):
    use_diffusers()
    body = generate(client, alice_key, {"prompt": "a fox", "n": 3, "seed": 1234, "orientation": "square"}).json()
    batch_calls = [call for call in pipeline_calls if call.get("num_images_per_prompt") == 3]
    assert len(pipeline_calls) == 1 and len(batch_calls) == 1
    assert len(batch_calls[0]["generator"]) == 3
    assert [image["seed"] for image in body["images"]] == [1234, 1235, 1236]
    pixels = [fetch_image(client, image["image_url"]).convert("RGB") for image in body["images"]]
    assert len({image.tobytes() for image in pixels}) == 3
    # Image k of the batch is image k's seed run alone (up to float rounding in batched kernels).
    alone = generate(client, alice_key, {"prompt": "a fox", "seed": 1235, "orientation": "square"}).json()
    single = fetch_image(client, alone["image_url"]).convert("RGB")
    difference = [abs(a - b) for a, b in zip(single.tobytes(), pixels[1].tobytes(), strict=True)]
    assert sum(difference) / len(difference) < 1.0
    assert ledger.balance(user=alice) == Decimal("1") - 4 * PRICE
