"""POST /api/generate against its own OpenAPI schema (/api/schema/), with schemathesis.

Requests generated from the schema, valid ones and invalid ones, go through the real WSGI app
with a valid key: no answer may be a 5xx, and every answer must match the schema (a documented
status, the body's shape, the content type). Examples are bounded so the run stays well under
a minute.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode

from config.wsgi import application

MAX_EXAMPLES = 40


# transactional_db: the app runs as it does in production, committing and closing (returning
# to the pool) its connection after every request, which a test-wide transaction would forbid.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generate_conforms_to_its_schema(mode, transactional_db, alice_key, settings):
    # Many examples with one key: the per-key limit of 10 a minute would answer most with 429.
    settings.ANIMEAPI_RATE_LIMIT_PER_MINUTE = 10**6
    auth = {"Authorization": f"Bearer {alice_key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application, headers=auth)
    operation = schema["/api/generate"]["POST"]

    @given(case=operation.as_strategy(mode))
    @hypothesis_settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def generate(case):
        case.call_and_validate(headers=auth)

    generate()
