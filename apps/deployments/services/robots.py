"""Robots: registration, enrolment with a shared key, enrolment keys, renaming and revocation."""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import IntegrityError, transaction
from rest_framework import status

from apps.deployments import robotstate
from apps.deployments.models import EnrollmentKey, Robot
from apps.deployments.robotstate import token_hash
from apps.deployments.selectors import enrollment_enabled
from vectormlops.errors import Conflict, DomainError, Forbidden, ValidationFailed

MIN_ENROLLMENT_KEY_LENGTH = 24
ENROLL_WINDOW_S = 60  # robotstate.ENROLL_FAILURES_PER_MIN wrong keys per address in this window


class EnrollmentThrottled(DomainError):
    """Too many wrong enrolment keys from one address in this window (429); ``wait_s``: until the window ends."""

    code = "throttled"
    status_code = status.HTTP_429_TOO_MANY_REQUESTS

    def __init__(self, message: str, *, wait_s: float):
        super().__init__(message, details={"wait_s": wait_s})
        self.wait_s = wait_s


def _new_token() -> str:
    return "vr_" + secrets.token_urlsafe(32)


def _clean_serial(serial: str) -> str:
    serial = (serial or "").strip()
    if not serial or len(serial) > 64 or not all(c.isalnum() or c in "-_." for c in serial):
        raise ValidationFailed("A serial is 1-64 letters, digits, '-', '_' or '.'.", code="bad_serial")
    return serial


@transaction.atomic
def robot_register(*, serial: str, name: str = "") -> tuple[Robot, str]:
    """Register a robot; returns it and its token (shown once: only the token's hash is stored)."""
    serial = _clean_serial(serial)
    if Robot.objects.filter(serial=serial).exists():
        raise Conflict(f"A robot with serial {serial} is already registered.", code="serial_taken")
    token = _new_token()
    robot = Robot(serial=serial, name=(name or "").strip()[:100], token_hash=token_hash(token))
    robot.full_clean()
    try:
        with transaction.atomic():
            robot.save()
    except IntegrityError as exc:  # a concurrent registration of the same serial
        raise Conflict(f"A robot with serial {serial} is already registered.", code="serial_taken") from exc
    return robot, token


def _key_ok(key: str) -> bool:
    if settings.ROBOT_ENROLLMENT_KEY and hmac.compare_digest(key.encode(), settings.ROBOT_ENROLLMENT_KEY.encode()):
        return True
    digest = hashlib.sha256(key.encode()).hexdigest()
    return EnrollmentKey.objects.filter(key_hash=digest, is_active=True).exists()


def robot_enroll(*, key: str, serial: str, name: str = "", address: str | None = None) -> tuple[Robot, str]:
    """A robot enrols itself with the shared enrolment key; returns it and its token.

    ``address``: the caller's (client) address. Each wrong key from it is counted; past
    ``robotstate.ENROLL_FAILURES_PER_MIN`` in a minute it is refused (``EnrollmentThrottled``) until the minute ends,
    even with the right key, so the key cannot be guessed."""
    if address is not None and (
        robotstate.failures_count("enroll", address, ENROLL_WINDOW_S) >= robotstate.ENROLL_FAILURES_PER_MIN
    ):
        raise EnrollmentThrottled("Too many wrong enrolment keys.", wait_s=robotstate._window_left(ENROLL_WINDOW_S))
    if not enrollment_enabled():
        raise Forbidden("Enrolment is off: no enrolment key is set.", code="enrollment_disabled")
    if not key or not _key_ok(key):
        if address is not None:
            robotstate.failure_record("enroll", address, ENROLL_WINDOW_S)
        raise Forbidden("Wrong enrolment key.", code="bad_enrollment_key")
    return robot_register(serial=serial, name=name)


@transaction.atomic
def enrollment_key_create(*, key: str, note: str = "") -> EnrollmentKey:
    """Store an admin-set enrolment key (its hash)."""
    if len(key or "") < MIN_ENROLLMENT_KEY_LENGTH:
        raise ValidationFailed(
            f"An enrolment key needs at least {MIN_ENROLLMENT_KEY_LENGTH} characters.", code="weak_enrollment_key"
        )
    row = EnrollmentKey(key_hash=hashlib.sha256(key.encode()).hexdigest(), note=note)
    row.full_clean()
    row.save()
    return row


@transaction.atomic
def enrollment_key_update(*, key: EnrollmentKey, note: str, is_active: bool) -> EnrollmentKey:
    """Change an enrolment key's note, or switch it off (robots enrolled with it keep their tokens) or on again."""
    key = EnrollmentKey.objects.select_for_update().get(pk=key.pk)
    key.note, key.is_active = note, is_active
    key.full_clean()
    key.save(update_fields=["note", "is_active"])
    return key


@transaction.atomic
def enrollment_keys_deactivate(*, keys) -> int:
    """Switch these enrolment keys off; returns how many were on."""
    return EnrollmentKey.objects.filter(pk__in=[key.pk for key in keys], is_active=True).update(is_active=False)


@transaction.atomic
def robot_revoke(*, robot: Robot, user=None) -> Robot:
    """Revoke a robot's token (every process refuses it within the staleness bound: receivers.robot_changed)."""
    robot = Robot.objects.select_for_update().get(pk=robot.pk)
    robot.is_active = False
    robot.save(update_fields=["is_active"])
    return robot


@transaction.atomic
def robot_rename(*, robot: Robot, name: str) -> Robot:
    """Change the display name of a robot (its token and history stay)."""
    robot = Robot.objects.select_for_update().get(pk=robot.pk)
    robot.name = name
    robot.full_clean()
    robot.save(update_fields=["name"])
    return robot
