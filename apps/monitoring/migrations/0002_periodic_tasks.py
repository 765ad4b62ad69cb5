"""Schedule the monitoring tasks with django-celery-beat (editable afterwards in the admin)."""

from django.db import migrations

# (name, task, every, period)
SCHEDULES = [
    ("monitoring: aggregate telemetry", "apps.monitoring.tasks.telemetry_aggregate_task", 1, "minutes"),
    ("monitoring: canary guard", "apps.monitoring.tasks.canary_guard_task", 1, "minutes"),
    ("monitoring: drift", "apps.monitoring.tasks.drift_compute_task", 1, "hours"),
    ("monitoring: prune raw telemetry", "apps.monitoring.tasks.telemetry_prune_task", 1, "days"),
]


def create_schedules(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    for name, task, every, period in SCHEDULES:
        # filter().first(): IntervalSchedule has no unique constraint, other apps may have made the same one.
        interval = IntervalSchedule.objects.filter(every=every, period=period).order_by("id").first()
        if interval is None:
            interval = IntervalSchedule.objects.create(every=every, period=period)
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": interval, "enabled": True, "description": "monitoring"}
        )
    # Tell a running beat (DatabaseScheduler) that its schedule changed.
    from django.utils import timezone

    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_schedules(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, *_ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, delete_schedules)]
