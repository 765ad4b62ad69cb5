from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "apps.training"

    def ready(self):
        from apps.datasets.panels import DatasetPanel, install_dataset_panel

        # The dataset page leads ML engineers on to training.
        install_dataset_panel("training", DatasetPanel(template="training/dataset_panel.html"))
