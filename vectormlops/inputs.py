"""Bounds on everything the API reads, checked before it reaches a service or the database, in one place.

- JSON bodies (BoundedJSONParser, the default parser) and JSON held in a form field (json_loads_bounded): nesting
  depth, integers within 64 bits (the database's bigint), finite floats with short literals, strings without NUL or
  lone surrogates (PostgreSQL stores neither) and of bounded length.
- Form and multipart fields (BoundedFormParser, BoundedMultiPartParser) and query strings: no NUL, bounded length,
  digit strings within 64 bits.
- Ids in URL paths (ApiInputBoundsMiddleware): an id beyond 64 bits names nothing, so it is a 404.
- Times (datetime_parse): ISO 8601, an offset within +-18:00 and a year between 1970 and 2200, answered in UTC.
Every refusal is a 400 (404 for a path id) in the error envelope, with a stable code.
"""

import json
import math
import re
from datetime import UTC, datetime

from django.http import JsonResponse
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

from vectormlops.errors import ValidationFailed, error_body

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 32
MAX_STRING_LENGTH = 1_000_000  # characters in one JSON string or form field (bodies are bounded in bytes too)
MAX_NUMBER_LITERAL = 40  # characters in one JSON number: no 400-digit numbers get converted at all
MIN_YEAR, MAX_YEAR = 1970, 2200
_SURROGATE = re.compile("[\ud800-\udfff]")


class InputOutOfBounds(ValidationFailed):
    """A value the API cannot store or compute with (400)."""


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_LITERAL:
        raise InputOutOfBounds("A number in the body is too long.", code="number_out_of_range")
    value = int(literal)
    if not INT64_MIN <= value <= INT64_MAX:
        raise InputOutOfBounds(
            "An integer in the body is beyond 64 bits.", code="number_out_of_range", details={"value": literal}
        )
    return value


def _parse_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_LITERAL:
        raise InputOutOfBounds("A number in the body is too long.", code="number_out_of_range")
    value = float(literal)
    if not math.isfinite(value):
        raise InputOutOfBounds("A number in the body is out of range.", code="number_out_of_range")
    return value


def _parse_constant(name: str):
    raise InputOutOfBounds(f"{name} is not a JSON number.", code="number_out_of_range")


def text_check(value: str, *, where: str = "body") -> str:
    """A string the database can store: no NUL, no lone surrogate, bounded length."""
    if len(value) > MAX_STRING_LENGTH:
        raise InputOutOfBounds(
            f"A text in the {where} is longer than {MAX_STRING_LENGTH} characters.",
            code="text_too_long",
            details={"max": MAX_STRING_LENGTH},
        )
    if "\x00" in value or _SURROGATE.search(value):
        raise InputOutOfBounds(
            f"A text in the {where} holds a NUL character or a lone surrogate.", code="invalid_characters"
        )
    return value


def json_check_bounded(value) -> None:
    """Walk a parsed JSON value (without recursion) and refuse what is too deep or cannot be stored."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InputOutOfBounds(
                f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels.",
                code="too_deep",
                details={"max_depth": MAX_JSON_DEPTH},
            )
        if isinstance(item, str):
            text_check(item)
        elif isinstance(item, dict):
            for key, inner in item.items():
                text_check(key)
                stack.append((inner, depth + 1))
        elif isinstance(item, list):
            stack.extend((inner, depth + 1) for inner in item)


def json_loads_bounded(text: str | bytes):
    """json.loads with the bounds above; malformed JSON is a 400 ``malformed_request``."""
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except RecursionError as exc:
        raise InputOutOfBounds(
            f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels.",
            code="too_deep",
            details={"max_depth": MAX_JSON_DEPTH},
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, InputOutOfBounds):
            raise
        raise ValidationFailed(f"Malformed JSON: {exc}", code="malformed_request") from exc
    json_check_bounded(value)
    return value


def datetime_parse(value, *, field: str = "captured_at", code: str = "invalid_captured_at") -> datetime:
    """An ISO 8601 time (``Z`` or an offset; naive means UTC) as an aware UTC datetime within sane years."""
    if isinstance(value, datetime):
        parsed = value
    else:
        if not isinstance(value, str) or len(value) > 64:
            raise ValidationFailed(f"{field} must be an ISO 8601 date and time.", code=code)
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:  # month 13, offset +99:00, garbage
            raise ValidationFailed(
                f"{field} must be an ISO 8601 date and time.", code=code, details={"value": value}
            ) from exc
    offset = parsed.utcoffset()
    if offset is not None and abs(offset.total_seconds()) > 18 * 3600:
        raise ValidationFailed(f"{field} has an offset beyond +-18:00.", code=code, details={"value": str(value)})
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValidationFailed(
            f"{field} must be between the years {MIN_YEAR} and {MAX_YEAR}.", code=code, details={"value": str(value)}
        )
    return parsed.replace(tzinfo=UTC) if offset is None else parsed.astimezone(UTC)


def field_check(name: str, value: str, *, where: str) -> None:
    """A form field or query value: storable text, and a digit string within 64 bits (ids, versions)."""
    text_check(value, where=where)
    digits = value[1:] if value[:1] in "+-" else value
    if digits.isdecimal() and (len(digits) > 19 or not INT64_MIN <= int(value) <= INT64_MAX):
        raise InputOutOfBounds(
            f"{name} is a number beyond 64 bits.", code="number_out_of_range", details={"field": name}
        )


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with the bounds above."""

    def parse(self, stream, media_type=None, parser_context=None):
        return json_loads_bounded(stream.read() if stream is not None else b"")


def _check_form(data) -> None:
    for name, values in data.lists():
        text_check(name, where="form")
        for value in values:
            if isinstance(value, str):
                field_check(name, value, where="form")


class BoundedFormParser(FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _check_form(data)
        return data


class BoundedMultiPartParser(MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        result = super().parse(stream, media_type, parser_context)
        _check_form(result.data)
        return result


class ApiInputBoundsMiddleware:
    """Under /api/: a path id beyond 64 bits is a 404, a query value that cannot be stored or compared is a 400."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not request.path.startswith("/api/"):
            return None
        for value in view_kwargs.values():
            if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
                return JsonResponse(error_body("not_found", "No such object (the id is beyond 64 bits)."), status=404)
        try:
            for name, values in request.GET.lists():
                for value in values:
                    field_check(name, value, where="query")
        except InputOutOfBounds as exc:
            return JsonResponse(error_body(exc.code, exc.message, exc.details), status=400)
        return None
