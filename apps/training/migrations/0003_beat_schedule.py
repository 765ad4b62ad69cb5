"""Celery beat entries for scheduled retraining and the stale-run sweeper (intervals editable in the admin)."""

from django.db import migrations

ENTRIES = [
    # (name, task, every, period)
    ("training: retrain due datasets", "apps.training.tasks.retrain_schedule_task", 15, "minutes"),
    ("training: sweep stale runs", "apps.training.tasks.training_runs_sweep_task", 1, "minutes"),
]


def create_entries(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, period in ENTRIES:
        schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": schedule, "queue": "default", "enabled": True}
        )


def delete_entries(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, *_ in ENTRIES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0002_retrain_policy"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_entries, delete_entries)]
