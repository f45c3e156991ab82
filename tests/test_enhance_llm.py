import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from generation.enhance import enhance_prompt


class StandInChatServer:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 whose answer each test sets."""

    def __init__(self):
        self.answer = "1girl, solo"
        self.status = 200
        self.delay_s = 0.0
        self.raw_body = None
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append({"path": self.path, "headers": dict(self.headers),
                                        "body": json.loads(self.rfile.read(length))})
                time.sleep(server.delay_s)
                body = server.raw_body if server.raw_body is not None else json.dumps(
                    {"choices": [{"index": 0, "message": {"role": "assistant", "content": server.answer}}]}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def llm(settings):
    with StandInChatServer() as server:
        settings.ENHANCE_LLM_URL = server.url
        settings.ENHANCE_LLM_MODEL = "tagger-7b"
        settings.ENHANCE_LLM_API_KEY = "sk-test"
        settings.ENHANCE_LLM_TIMEOUT_S = 1.0
        settings.ENHANCE_STYLE = "none"
        yield server


def offline(prompt, settings, **kwargs):
    url, settings.ENHANCE_LLM_URL = settings.ENHANCE_LLM_URL, ""
    try:
        return enhance_prompt(prompt, allow_nsfw=True, **kwargs).prompt
    finally:
        settings.ENHANCE_LLM_URL = url


def test_llm_tags_are_used_after_checking_them_against_the_vocabulary(llm):
    llm.answer = "1girl, solo, blue hair, soft_lighting, magical, Forest, trees, hatsune_miku"
    prompt = enhance_prompt("anime girl with blue hair, magical forest", allow_nsfw=True).prompt
    assert prompt == "1girl, solo, hatsune_miku, vocaloid, blue_hair, forest, tree"
    request = llm.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["body"]["model"] == "tagger-7b"
    assert request["body"]["messages"][-1] == {"role": "user", "content": "anime girl with blue hair, magical forest"}


def test_llm_cannot_bring_back_what_the_prompt_negates_or_explicit_tags(llm):
    llm.answer = "1boy, solo, glasses, nude, short_hair"
    enhanced = enhance_prompt("a boy without glasses", allow_nsfw=False)
    assert enhanced.prompt == "1boy, solo, safe, short_hair"
    assert enhanced.negative_prompt.startswith("glasses, nsfw")


@pytest.mark.parametrize("failure", ["http_error", "timeout", "empty", "no_real_tag", "not_json", "no_choices"])
def test_any_llm_failure_falls_back_to_the_offline_enhancer(llm, settings, failure):
    if failure == "http_error":
        llm.status = 500
    elif failure == "timeout":
        settings.ENHANCE_LLM_TIMEOUT_S = 0.2
        llm.delay_s = 1.0
    elif failure == "empty":
        llm.answer = ""
    elif failure == "no_real_tag":
        llm.answer = "soft_lighting, magical, beautiful_scenery"
    elif failure == "not_json":
        llm.raw_body = b"<html>gateway</html>"
    elif failure == "no_choices":
        llm.raw_body = b'{"choices": []}'
    prompt = "a girl with red hair in twin braids"
    expected = offline(prompt, settings)  # loads the vocabulary outside the timed part
    started = time.monotonic()
    assert enhance_prompt(prompt, allow_nsfw=True).prompt == expected
    assert time.monotonic() - started < 1.0
    assert len(llm.requests) == 1


def test_unreachable_llm_falls_back(settings):
    settings.ENHANCE_LLM_URL = "http://127.0.0.1:9"  # the discard port: nothing listens
    settings.ENHANCE_STYLE = "none"
    assert enhance_prompt("two cats and a dog", allow_nsfw=True).prompt == "no_humans, cat, multiple_cats, dog"
