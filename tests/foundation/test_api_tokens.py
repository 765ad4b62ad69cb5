"""People's API tokens: stored as a digest only, optionally expiring, shown once (command and admin)."""

import importlib
import io
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def create_api_token(*args) -> str:
    out = io.StringIO()
    call_command("create_api_token", *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def stored_text() -> str:
    return " ".join(str(value) for row in AuthToken.objects.values_list() for value in row)


def test_command_prints_a_key_that_works_and_is_stored_only_as_a_digest(annotator):
    key = create_api_token(annotator.username)
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert token_client(key).get("/api/v1/datasets").status_code == 200
    token = AuthToken.objects.get(user=annotator)
    assert token.expiry is None
    assert key not in stored_text() and token.digest != key


def test_a_wrong_key_is_401(annotator):
    key = create_api_token(annotator.username)
    assert token_client(key[:-1] + ("0" if key[-1] != "0" else "1")).get("/api/v1/datasets").status_code == 401


def test_expiring_token_stops_working_after_its_expiry(annotator):
    key = create_api_token(annotator.username, "--expires-days", "2")
    token = AuthToken.objects.get(user=annotator)
    assert timedelta(days=1, hours=23) < token.expiry - timezone.now() <= timedelta(days=2)
    assert token_client(key).get("/api/v1/datasets").status_code == 200
    AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    response = token_client(key).get("/api/v1/datasets")
    assert response.status_code == 401 and response.json()["error"]["code"] == "authentication_failed"


def test_command_refuses_an_unknown_user_and_a_nonpositive_expiry(annotator):
    with pytest.raises(CommandError, match="No active user"):
        create_api_token("nobody-here")
    with pytest.raises(CommandError, match="positive"):
        create_api_token(annotator.username, "--expires-days", "0")
    assert not AuthToken.objects.exists()


def test_admin_shows_the_key_once_and_never_again(client, make_user, annotator):
    client.force_login(make_user("root", "admin"))
    response = client.post("/admin/knox/authtoken/add/", {"user": annotator.pk, "expiry": ""}, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"] if str(m).startswith("TOKEN ")]
    assert len(shown) == 1
    key = shown[0].split(" ", 1)[1]
    assert token_client(key).get("/api/v1/datasets").status_code == 200
    assert key not in client.get("/admin/knox/authtoken/").content.decode()
    assert key not in stored_text()


def test_migration_hashes_existing_drf_tokens_and_drops_the_plain_text_table(transactional_db, annotator):
    migration = importlib.import_module("vectormlops.migrations.0002_api_tokens_hashed")
    old_key = "0123456789abcdef0123456789abcdef01234567"  # a DRF authtoken key: 40 hex characters
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id integer, created timestamp)")
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s)", [old_key, annotator.pk, timezone.now()])
    with connection.schema_editor() as schema_editor:
        migration.hash_existing_drf_tokens(apps, schema_editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    assert token_client(old_key).get("/api/v1/datasets").status_code == 200
    assert old_key not in stored_text()
