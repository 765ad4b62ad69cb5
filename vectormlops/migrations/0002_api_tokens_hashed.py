"""People's API tokens move from DRF's authtoken (keys stored in plain text) to django-rest-knox (a digest only).

Existing keys keep working: each is hashed into a knox token without expiry, then the plain-text table is dropped.
"""

import datetime

from django.db import migrations
from django.utils import timezone


def hash_existing_drf_tokens(apps, schema_editor):
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id, created FROM authtoken_token")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        if timezone.is_naive(created):  # a raw cursor may hand back a naive value; it was stored in UTC
            created = timezone.make_aware(created, datetime.UTC)
        token = AuthToken(digest=hash_token(key), token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id)
        token.save()
        AuthToken.objects.filter(pk=token.pk).update(created=created)  # created is auto_now_add
    schema_editor.execute(f"DROP TABLE {schema_editor.quote_name('authtoken_token')}")
    schema_editor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):
    dependencies = [("vectormlops", "0001_roles"), ("knox", "0009_extend_authtoken_field")]
    operations = [migrations.RunPython(hash_existing_drf_tokens, migrations.RunPython.noop)]
