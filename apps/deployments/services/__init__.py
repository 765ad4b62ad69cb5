"""Every write of the deployments app, by sub-domain: which model robots run (promotion, rollback, canaries, pins),
robots (registration, enrolment, revocation), telemetry intake and the promotion gate (evaluation, decisions).
Views, API views, admin actions and Celery tasks all call these; the public services are listed here."""

from apps.deployments.services.gating import (
    gate_current_or_request,
    gate_request,
    gate_request_done,
    model_evaluate,
    model_evaluate_and_gate,
    model_gate,
    policy_for,
)
from apps.deployments.services.promotion import Promotion, canary_end, deployment_rollback, model_promote, robot_pin
from apps.deployments.services.robots import (
    MIN_ENROLLMENT_KEY_LENGTH,
    EnrollmentThrottled,
    enrollment_key_create,
    enrollment_key_update,
    enrollment_keys_deactivate,
    robot_enroll,
    robot_register,
    robot_rename,
    robot_revoke,
)
from apps.deployments.services.shadow import shadow_end, shadow_start
from apps.deployments.services.telemetry import MAX_TELEMETRY_RECORDS, telemetry_ingest

__all__ = [
    "shadow_end",
    "shadow_start",
    "MAX_TELEMETRY_RECORDS",
    "MIN_ENROLLMENT_KEY_LENGTH",
    "EnrollmentThrottled",
    "Promotion",
    "canary_end",
    "deployment_rollback",
    "enrollment_key_create",
    "enrollment_key_update",
    "enrollment_keys_deactivate",
    "gate_current_or_request",
    "gate_request",
    "gate_request_done",
    "model_evaluate",
    "model_evaluate_and_gate",
    "model_gate",
    "model_promote",
    "policy_for",
    "robot_enroll",
    "robot_pin",
    "robot_register",
    "robot_rename",
    "robot_revoke",
    "telemetry_ingest",
]
