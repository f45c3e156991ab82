"""Every API operation against its own OpenAPI schema (/api/schema/), with schemathesis.

Requests generated from the schema, valid ones and invalid ones, go through the real WSGI app
with a valid key: no answer may be a 5xx, every answer must match the schema (a documented
status, the body's shape, the content type), and a request the schema calls invalid must be
refused. Examples are bounded and derandomized: the run is the same every time and stays well
under a minute.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from config.wsgi import application
from generation.fields import MAX_PROMPT_LENGTH

MAX_EXAMPLES = 100


def checks_not_to_run(case):
    """Checks whose premise the API's documented rules contradict for this request.

    Schema-valid requests may still be refused (400) for rules a JSON schema cannot state: a
    webhook_url only with "async": true and only to a public address, a prompt that is blank
    once trimmed. And the length limit applies after trimming, so an over-long prompt that is
    mostly surrounding whitespace is rightly accepted.
    """
    excluded = [positive_data_acceptance]
    prompt = case.body.get("prompt") if isinstance(case.body, dict) else None
    if isinstance(prompt, str) and len(prompt) > MAX_PROMPT_LENGTH >= len(prompt.strip()):
        excluded.append(negative_data_rejection)
    return excluded


# (path, method, examples per mode, whether it has inputs a negative case can break)
OPERATIONS = [
    ("/api/generate", "POST", MAX_EXAMPLES, True),
    ("/api/enhance", "POST", 50, True),
    ("/api/tags", "GET", 50, True),
    ("/api/generations", "GET", 20, False),
    ("/api/generations/{generation_id}", "GET", 30, True),
    ("/api/generations/{generation_id}", "DELETE", 30, True),
    ("/api/pricing", "GET", 10, False),
    ("/api/models", "GET", 10, False),
    ("/v1/images/generations", "POST", 50, True),
    ("/v1/models", "GET", 10, False),
]


def test_every_operation_is_checked():
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    documented = {(operation.path, operation.method.upper()) for operation in
                  (result.ok() for result in schema.get_all_operations())}
    assert documented == {(path, method) for path, method, _, _ in OPERATIONS}


def test_every_operation_documents_its_401():
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    for result in schema.get_all_operations():
        operation = result.ok()
        assert "401" in operation.definition.raw["responses"], (operation.method, operation.path)


# transactional_db: the app runs as it does in production, committing and closing (returning
# to the pool) its connection after every request, which a test-wide transaction would forbid.
# An operation without parameters or body has no invalid request to make: positive cases only.
CASES = [(path, method, examples, mode) for path, method, examples, has_inputs in OPERATIONS
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_inputs or mode == GenerationMode.POSITIVE]


@pytest.mark.parametrize("path,method,examples,mode", CASES, ids=[f"{m} {p} {mode.value}" for p, m, _, mode in CASES])
def test_operation_conforms_to_its_schema(path, method, examples, mode, transactional_db, alice_key, settings):
    # Many examples with one key: the per-key limits (10 or 60 a minute) would answer most with 429.
    settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE = 10**6
    auth = {"Authorization": f"Bearer {alice_key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    operation = schema[path][method]

    @given(case=operation.as_strategy(mode))
    @hypothesis_settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def call(case):
        case.call_and_validate(headers=auth, excluded_checks=checks_not_to_run(case))

    call()
