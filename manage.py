#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vectormlops.settings")
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except Exception as exc:
        # A command that needs Redis (it queues work or touches a cache) while `make run`'s Valkey is down: say so.
        from django.conf import settings

        from vectormlops.embedded_redis import redis_unreachable, redis_unreachable_message

        cause = redis_unreachable(exc)
        if cause is None:
            raise
        sys.stderr.write(redis_unreachable_message(settings.REDIS_URL, cause) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
