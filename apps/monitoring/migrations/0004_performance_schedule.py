"""Schedule the production performance check every minute (editable afterwards in the admin)."""

from django.db import migrations

NAME = "monitoring: production performance"
TASK = "apps.monitoring.tasks.performance_check_task"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    interval = IntervalSchedule.objects.filter(every=1, period="minutes").order_by("id").first()
    if interval is None:
        interval = IntervalSchedule.objects.create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=NAME, defaults={"task": TASK, "interval": interval, "enabled": True, "description": "monitoring"}
    )
    from django.utils import timezone

    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0003_performance_and_notifications")]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
