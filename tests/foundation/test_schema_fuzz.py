"""Schemathesis over the whole OpenAPI schema, as every role: no 500, and every answer (status, content type, body,
headers) is one the schema documents. Bounded and reproducible: a fixed, small number of derandomized examples per
operation and role."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.builders import make_dataset, make_image, make_robot
from vectormlops.services import api_token_create

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
ROLES = ["admin", "ml_engineer", "annotator", "robot", "anonymous"]
EXAMPLES_PER_OPERATION = 4


schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = get_wsgi_application()  # requests go through Django in this process, on the test database


@pytest.fixture
def keep_test_connection():
    """Django's test client does the same: a request must not close the test transaction's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def callers(make_user, keep_test_connection, settings):
    """Given a dataset with an image, {role: the Authorization header of a caller in that role}."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # setup in milliseconds
    make_image(make_dataset("robots"), seed=1)
    headers = {"anonymous": {}, "robot": {"Authorization": f"Bearer {make_robot(serial='00fuzz01')[1]}"}}
    for role in ("admin", "ml_engineer", "annotator"):
        user = make_user(f"fuzz-{role}", role)
        headers[role] = {"Authorization": f"Token {api_token_create(user=user, expires_in=None)[1]}"}
    return headers


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,  # the same requests on every run: CI is reproducible
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found, in bounded time
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented_to_every_role(case, callers):
    for role in ROLES:  # every generated request, sent as each role in turn
        try:
            case.call_and_validate(headers=callers[role], checks=CHECKS)
        except BaseException as failure:
            failure.add_note(f"(sent as {role})")
            raise
