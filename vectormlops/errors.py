"""One exception hierarchy for domain errors, and the one DRF handler that turns every error into the envelope
``{"error": {"code": "snake_case", "message": "...", "details": {...}}}`` of shared/API.md."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response


class DomainError(Exception):
    """A rule of the domain was broken by the caller's input; services raise these, views never catch them."""

    code = "invalid_request"
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None, status_code=None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.details = details or {}
        if status_code:
            self.status_code = status_code


class ValidationFailed(DomainError):
    """Input is well-formed but not acceptable (400)."""

    code = "invalid"


class NotFound(DomainError):
    """The thing asked for does not exist (404)."""

    code = "not_found"
    status_code = status.HTTP_404_NOT_FOUND


class Forbidden(DomainError):
    """The caller is known but may not do this (403)."""

    code = "permission_denied"
    status_code = status.HTTP_403_FORBIDDEN


class Conflict(DomainError):
    """The request collides with the current state (409): a stale version, a taken name."""

    code = "conflict"
    status_code = status.HTTP_409_CONFLICT


class PayloadTooLarge(DomainError):
    """The body or file is over a limit (413)."""

    code = "too_large"
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _drf_code(exc: exceptions.APIException) -> str:
    mapping = {
        exceptions.NotAuthenticated: "not_authenticated",
        exceptions.AuthenticationFailed: "authentication_failed",
        exceptions.PermissionDenied: "permission_denied",
        exceptions.NotFound: "not_found",
        exceptions.MethodNotAllowed: "method_not_allowed",
        exceptions.NotAcceptable: "not_acceptable",
        exceptions.UnsupportedMediaType: "unsupported_media_type",
        exceptions.Throttled: "throttled",
        exceptions.ParseError: "malformed_request",
        exceptions.ValidationError: "invalid",
    }
    for cls, code in mapping.items():
        if isinstance(exc, cls):
            return code
    return "error"


def api_exception_handler(exc, context):
    """DRF EXCEPTION_HANDLER: every API error leaves in the same envelope."""
    # Imported here: rest_framework.views loads the parser settings, and the parsers (vectormlops.inputs) import us.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        details = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(error_body("invalid", "; ".join(exc.messages), details), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django's 500 handling log it
    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        first = _first_message(details)
        response.data = error_body("invalid", first, details)
    else:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        extra = {"wait_s": exc.wait} if isinstance(exc, exceptions.Throttled) and exc.wait else {}
        response.data = error_body(_drf_code(exc), str(detail), extra)
    return response


def _first_message(details) -> str:
    """A human sentence naming the first bad field, e.g. ``boxes: Box 3 has zero width.``"""
    if isinstance(details, dict):
        for field, value in details.items():
            inner = _first_message(value)
            return inner if field == "non_field_errors" else f"{field}: {inner}"
    if isinstance(details, list) and details:
        return _first_message(details[0])
    return str(details) if details else "Invalid input."
