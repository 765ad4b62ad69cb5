"""The API schema's error answers, in one place: every operation documents each error status it can answer, with
the one envelope of vectormlops.errors and the codes it may carry.

The statuses follow from what the view is made of (authentication -> 401, permissions -> 403, parameters or a body
-> 400 and 404, a body -> 415, a multipart body -> 413, throttles -> 429); a view adds only its particular domain
codes as ``api_errors = {409: ("run_in_progress",), ...}``. drf-spectacular uses this class through
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"].
"""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.permissions import AllowAny

ENVELOPE_NAME = "ErrorEnvelope"
ENVELOPE_SCHEMA = {
    "type": "object",
    "description": 'Every API error: {"error": {"code": "snake_case", "message": "...", "details": {...}}}.',
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "stable, snake_case; listed per status on each operation"},
                "message": {"type": "string", "description": "a human sentence"},
                "details": {"type": "object", "additionalProperties": True},
            },
            "required": ["code", "message", "details"],
        }
    },
    "required": ["error"],
}

REASONS = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported media type",
    429: "Too many requests",
}
# The codes vectormlops.errors gives DRF's own errors, per status.
GENERIC_CODES = {
    400: ("invalid", "malformed_request", "number_out_of_range", "too_deep", "invalid_characters", "text_too_long"),
    401: ("not_authenticated", "authentication_failed"),
    403: ("permission_denied",),
    404: ("not_found",),
    413: ("too_large",),
    415: ("unsupported_media_type",),
    429: ("throttled",),
}


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the error answers each operation can give."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        envelope = ResolvedComponent(
            name=ENVELOPE_NAME, type=ResolvedComponent.SCHEMA, object=ENVELOPE_NAME, schema=ENVELOPE_SCHEMA
        )
        self.registry.register_on_missing(envelope)
        responses = operation.setdefault("responses", {})
        for status, codes in self.error_statuses(operation).items():
            existing = responses.get(str(status)) or {}
            if existing.get("content") and not _is_empty(existing["content"]):
                continue  # the view documented a body of its own for this status
            responses[str(status)] = {
                "description": f"{REASONS.get(status, 'Error')}. Error codes: "
                + ", ".join(f"`{code}`" for code in codes),
                "content": {"application/json": {"schema": envelope.ref}},
            }
        return operation

    def error_statuses(self, operation: dict) -> dict[int, tuple[str, ...]]:
        """{status: codes} this operation can answer with the error envelope."""
        statuses: dict[int, list[str]] = {}

        def add(status: int, codes=()):
            known = statuses.setdefault(status, list(GENERIC_CODES.get(status, ())))
            known.extend(code for code in codes if code not in known)

        body = operation.get("requestBody")
        parameters = operation.get("parameters") or []
        if self.view.get_authenticators():
            add(401)
        if not all(isinstance(permission, AllowAny) for permission in self._permissions()):
            add(403)
        if body or parameters:
            add(400)
            add(404)  # a path id, or a dataset named in the query or body, that does not exist
        if body:
            add(415)
            if any("multipart" in media for media in body.get("content", {})):
                add(413)
        if getattr(self.view, "throttle_classes", None):
            add(429)
        for status, codes in getattr(self.view, "api_errors", {}).items():
            add(int(status), codes)
        # Errors the view documented itself without a body (e.g. ``404: None``) get the envelope too.
        for status in operation.get("responses", {}):
            if str(status).isdigit() and int(status) >= 400:
                add(int(status))
        return {status: tuple(codes) for status, codes in sorted(statuses.items())}

    def _permissions(self):
        return self.view.get_permissions()


def _is_empty(content: dict) -> bool:
    return all(not (media or {}).get("schema") for media in content.values())
