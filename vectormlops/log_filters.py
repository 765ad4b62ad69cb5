"""Logging filters (no Django imports beyond the exception class: settings load this before the apps)."""

import logging

from django.core.exceptions import PermissionDenied


class PlainForbidden(logging.Filter):
    """An ordinary 403 (a signed-in person without the role) is one line in the log, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PermissionDenied):
            record.exc_info = None
            record.exc_text = None
        return True
