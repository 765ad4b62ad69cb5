"""Robot authentication and throttling for DRF: ``Authorization: Bearer <token>``. Thin classes: the token lookup,
its local copy and the counters live in apps.deployments.robotstate."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.throttling import BaseThrottle

from apps.deployments import robotstate
from apps.deployments.robotstate import RobotPrincipal, token_hash

__all__ = ["RobotPrincipal", "RobotThrottle", "RobotTokenAuthentication", "token_hash"]


class RobotTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2 or len(header[1]) > 200:
            raise exceptions.AuthenticationFailed("Malformed Bearer token header.")
        try:
            token = header[1].decode("ascii")
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Malformed Bearer token.") from exc
        try:
            principal = robotstate.robot_for_token(token, request=request)
        except robotstate.TokenRefused as refused:
            if refused.throttled:
                raise exceptions.Throttled(
                    wait=refused.wait, detail="Too many unknown tokens from this address."
                ) from None
            raise exceptions.AuthenticationFailed("Unknown or revoked robot token.") from None
        return principal, principal

    def authenticate_header(self, request):
        return self.keyword


class RobotThrottle(BaseThrottle):
    """At most ``DEFAULT_THROTTLE_RATES["robot"]`` requests per robot and window; people are not throttled here."""

    def allow_request(self, request, view):
        if not getattr(request.user, "is_robot", False):
            return True
        allowed, self._wait = robotstate.robot_throttle_hit(request.user)
        return allowed

    def wait(self):
        return getattr(self, "_wait", None)


class RobotTokenScheme(OpenApiAuthenticationExtension):
    """Describes robot Bearer tokens in the OpenAPI schema (/api/schema/)."""

    target_class = "apps.deployments.authentication.RobotTokenAuthentication"
    name = "robotBearer"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A robot token (robot endpoints only)."}
