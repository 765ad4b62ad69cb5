import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("datasets", "0001_initial"),
        ("deployments", "0005_shadow_gate_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="RobotDataset",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("first_polled_at", models.DateTimeField(auto_now_add=True)),
                (
                    "dataset",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="datasets.dataset"
                    ),
                ),
                (
                    "robot",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="deployments.robot"
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("robot", "dataset"), name="robot_dataset_once")],
            },
        ),
    ]
