"""Notifications: alerts, gate decisions, promotions, rollbacks and failed runs sent to the people and systems each
dataset's rules name, by e-mail (Django's mail backend) or to a webhook (a JSON body signed with HMAC-SHA256).

A notification is a row first (the delivery log), delivered by Celery after the commit, retried on failure."""

import hashlib
import hmac
import json
import logging

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from apps.datasets.models import Dataset
from apps.monitoring.models import Alert, Notification, NotificationRule
from apps.monitoring.presentation import alert_headline, alert_links
from vectormlops.errors import DomainError

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-VectorMLOps-Signature"
WEBHOOK_TIMEOUT_S = 10


class DeliveryFailed(DomainError):
    """An attempt to deliver a notification failed; the task retries it."""

    code = "notification_delivery_failed"


def absolute_url(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def webhook_signature(secret: str, body: bytes) -> str:
    """The value of the signature header: ``sha256=`` and the hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def notify(
    *, dataset: Dataset, event: str, key: str, subject: str, text: str, links: dict[str, str], data: dict
) -> list[Notification]:
    """Record one notification per enabled rule of the dataset that wants ``event`` (once per rule and ``key``) and
    queue its delivery after the commit. ``links`` are site paths (made absolute here)."""
    if event not in NotificationRule.Event.values:
        raise ValueError(f"unknown notification event {event!r}")
    rules = [r for r in NotificationRule.objects.filter(dataset=dataset, enabled=True) if event in (r.events or [])]
    if not rules:
        return []
    payload = {
        "event": event,
        "dataset": dataset.slug,
        "subject": subject,
        "text": text,
        "links": {name: absolute_url(path) for name, path in links.items()},
        "data": data,
        "created_at": timezone.now().isoformat(),
    }
    made = []
    with transaction.atomic():
        for rule in rules:
            notification, created = Notification.objects.get_or_create(
                rule=rule,
                key=key[:120],
                defaults={"event": event, "subject": subject[:200], "text": text, "payload": payload},
            )
            if created:
                made.append(notification)
    if made:
        from apps.monitoring.tasks import notification_deliver_task  # tasks import services, not the reverse

        ids = [n.id for n in made]
        transaction.on_commit(lambda: [notification_deliver_task.delay(i) for i in ids])
    return made


def _email_body(notification: Notification) -> str:
    lines = [notification.text, ""]
    lines += [f"{name}: {url}" for name, url in notification.payload.get("links", {}).items()]
    lines += ["", f"You get this because a notification rule of {notification.payload.get('dataset')} names you."]
    return "\n".join(lines)


def _send(notification: Notification) -> int | None:
    rule = notification.rule
    if rule.channel == NotificationRule.Channel.EMAIL:
        recipients = [a.strip() for a in rule.target.split(",") if a.strip()]
        send_mail(
            f"[VectorMLOps] {notification.subject}", _email_body(notification), settings.DEFAULT_FROM_EMAIL, recipients
        )
        return None
    body = json.dumps(notification.payload, sort_keys=True, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "VectorMLOps-webhook",
        "X-VectorMLOps-Event": notification.event,
        "X-VectorMLOps-Delivery": str(notification.id),
    }
    if rule.secret:
        headers[SIGNATURE_HEADER] = webhook_signature(rule.secret, body)
    response = requests.post(rule.target, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S, allow_redirects=False)
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"the webhook answered {response.status_code}", details={"status": response.status_code})
    return response.status_code


def notification_deliver(*, notification_id: int, final_attempt: bool = False) -> Notification:
    """One delivery attempt, recorded in the log. A failure raises DeliveryFailed (the task retries it); on the
    final attempt the notification is marked failed. A delivered notification is never sent again."""
    with transaction.atomic():
        notification = Notification.objects.select_for_update().select_related("rule").get(pk=notification_id)
        if notification.status != Notification.Status.PENDING:
            return notification
        notification.attempts += 1
        try:
            notification.response_status = _send(notification)
        except (requests.RequestException, OSError, DeliveryFailed) as exc:
            notification.last_error = f"attempt {notification.attempts}: {exc}"[:2000]
            notification.response_status = (
                getattr(exc, "details", {}).get("status") if isinstance(exc, DomainError) else None
            )
            if final_attempt:
                notification.status = Notification.Status.FAILED
            notification.save(update_fields=["attempts", "last_error", "response_status", "status"])
            failure = DeliveryFailed(notification.last_error)
        else:
            notification.status = Notification.Status.DELIVERED
            notification.delivered_at = timezone.now()
            notification.save(update_fields=["attempts", "response_status", "status", "delivered_at", "last_error"])
            return notification
    # Raised outside the atomic block so the attempt stays recorded.
    log.info("notification %s not delivered: %s", notification_id, failure)
    raise failure


# --- what each event says --------------------------------------------------------------------------------------


def alert_notify(*, alert: Alert) -> list[Notification]:
    """A newly opened alert, in words, with links to what it is about."""
    return notify(
        dataset=alert.dataset,
        event=NotificationRule.Event.ALERT,
        key=f"alert:{alert.id}",
        subject=f"{alert.get_kind_display().capitalize()} alert on {alert.dataset.slug}",
        text=alert_headline(alert),
        links={"alert": reverse("monitoring:alert", args=[alert.id]), **alert_links(alert)},
        data={
            "alert_id": alert.id,
            "kind": alert.kind,
            "scope": alert.scope,
            "value": alert.value,
            "threshold": alert.threshold,
            "details": alert.details,
        },
    )


def alert_resolved_notify(*, alert: Alert) -> list[Notification]:
    """An alert that closed by itself (the figures recovered), in words, to the same rules as its opening."""
    opened = alert.first_seen.strftime("%Y-%m-%d %H:%M UTC")
    resolved = alert.resolved_at.strftime("%H:%M UTC")
    return notify(
        dataset=alert.dataset,
        event=NotificationRule.Event.ALERT,
        key=f"alert_resolved:{alert.id}",
        subject=f"Resolved: {alert.get_kind_display()} alert on {alert.dataset.slug}",
        text=(
            f"Resolved at {resolved}: the figures are back within the limits. "
            f"The alert opened at {opened} said: {alert_headline(alert)}"
        ),
        links={"alert": reverse("monitoring:alert", args=[alert.id]), **alert_links(alert)},
        data={
            "alert_id": alert.id,
            "kind": alert.kind,
            "scope": alert.scope,
            "resolved": True,
            "resolved_at": alert.resolved_at.isoformat(),
            "first_seen": alert.first_seen.isoformat(),
        },
    )


def gate_decision_notify(*, decision) -> list[Notification]:
    candidate = decision.candidate
    verdict = "passed" if decision.passed else "failed"
    against = f"model v{decision.production.number}" if decision.production_id else "no production model"
    return notify(
        dataset=candidate.dataset,
        event=NotificationRule.Event.GATE,
        key=f"gate:{decision.id}",
        subject=f"Model v{candidate.number} of {candidate.dataset.slug} {verdict} the promotion gate",
        text=f"Model v{candidate.number} {verdict} the gate against {against}. " + " ".join(decision.reasons or []),
        links={
            "deployments": reverse("deployments:dataset", args=[candidate.dataset.slug]),
            "promote": reverse("deployments:confirm_promote", args=[candidate.id]),
        },
        data={
            "gate_decision_id": decision.id,
            "model_id": candidate.id,
            "passed": decision.passed,
            "map_diff": decision.map_diff,
        },
    )


def deployment_notify(*, deployment) -> list[Notification]:
    """A promotion, a canary start or a rollback (an entry of the deployment history)."""
    dataset, model = deployment.dataset, deployment.model
    who = deployment.created_by.get_username() if deployment.created_by_id else "automation"
    if deployment.action == deployment.Action.ROLLBACK:
        event, subject = NotificationRule.Event.ROLLBACK, f"{dataset.slug}: rolled back to model v{model.number}"
    elif deployment.action == deployment.Action.PROMOTE and model is not None:
        event = NotificationRule.Event.PROMOTION
        if deployment.channel == deployment.Channel.CANARY:
            subject = f"{dataset.slug}: model v{model.number} is a canary on {deployment.canary_percent}% of robots"
        else:
            subject = f"{dataset.slug}: model v{model.number} is live in production"
    else:
        return []
    return notify(
        dataset=dataset,
        event=event,
        key=f"deployment:{deployment.id}",
        subject=subject,
        text=f"{subject} ({who}: {deployment.reason})",
        links={
            "deployments": reverse("deployments:dataset", args=[dataset.slug]),
            "monitoring": reverse("monitoring:dataset", args=[dataset.slug]),
        },
        data={
            "deployment_id": deployment.id,
            "channel": deployment.channel,
            "action": deployment.action,
            "model_id": deployment.model_id,
        },
    )


def run_failed_notify(*, run) -> list[Notification]:
    error = (run.error or "no error message").strip().splitlines()
    return notify(
        dataset=run.dataset,
        event=NotificationRule.Event.RUN_FAILED,
        key=f"run_failed:{run.id}",
        subject=f"Training run #{run.id} of {run.dataset.slug} failed",
        text=f"Training run #{run.id} of {run.dataset.slug} failed: {error[-1] if error else ''}",
        links={"run": reverse("training:run_detail", args=[run.id])},
        data={"run_id": run.id},
    )
