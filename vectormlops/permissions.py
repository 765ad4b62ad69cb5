"""Who may call what. Roles are Django groups; each role includes the ones below it:
annotator < reviewer < ml_engineer; active superusers may do everything. Robots are a separate kind of
caller (a robot token, see apps.deployments.authentication) and reach only the endpoints that allow them."""

from rest_framework.permissions import BasePermission

ANNOTATOR, REVIEWER, ML_ENGINEER = "annotator", "reviewer", "ml_engineer"
ROLES = (ANNOTATOR, REVIEWER, ML_ENGINEER)
_RANK = {name: i for i, name in enumerate(ROLES)}


def is_robot(user) -> bool:
    return bool(getattr(user, "is_robot", False))


def user_roles(user) -> set[str]:
    """The roles a person holds, including those implied by a higher one. Cached on the user object."""
    if not user or not user.is_authenticated or is_robot(user) or not user.is_active:
        return set()
    cached = getattr(user, "_vectormlops_roles", None)
    if cached is not None:
        return cached
    if user.is_superuser:
        roles = set(ROLES)
    else:
        names = set(user.groups.values_list("name", flat=True))
        top = max((_RANK[n] for n in names if n in _RANK), default=-1)
        roles = set(ROLES[: top + 1])
    user._vectormlops_roles = roles
    return roles


def has_role(user, role: str) -> bool:
    return role in user_roles(user)


class _RolePermission(BasePermission):
    role = ANNOTATOR
    message = "Your account lacks the role this needs."

    def has_permission(self, request, view):
        return has_role(request.user, self.role)


class IsPerson(BasePermission):
    """Default for the API: any signed-in person (not a robot)."""

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and not is_robot(user) and user.is_active)


class IsAnnotator(_RolePermission):
    role = ANNOTATOR


class IsReviewer(_RolePermission):
    role = REVIEWER


class IsMLEngineer(_RolePermission):
    role = ML_ENGINEER


class IsRobot(BasePermission):
    """Only an enrolled, active robot."""

    message = "Only robots may call this endpoint."

    def has_permission(self, request, view):
        return is_robot(request.user)


class IsRobotOrAnnotator(BasePermission):
    """Robots and people with at least the annotator role (image upload)."""

    def has_permission(self, request, view):
        return is_robot(request.user) or has_role(request.user, ANNOTATOR)


def role_required(role: str):
    """Decorator for HTML views: sign in first, then need the role (403 otherwise)."""
    from functools import wraps

    from django.contrib.auth.views import redirect_to_login
    from django.core.exceptions import PermissionDenied

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
