from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "apps.labeling"

    def ready(self):
        from django.urls import reverse

        from apps.datasets.models import Dataset, Image
        from apps.datasets.panels import DatasetPanel, install_dataset_panel, install_image_page
        from apps.datasets.signals import classes_remapped, image_ingested
        from apps.labeling.prelabel import on_image_ingested
        from apps.labeling.services.predictions import on_classes_remapped

        image_ingested.connect(on_image_ingested, sender=Image, dispatch_uid="labeling.on_image_ingested")
        classes_remapped.connect(on_classes_remapped, sender=Dataset, dispatch_uid="labeling.on_classes_remapped")
        # The dataset page shows the labeling queue and who works on what, live.
        install_dataset_panel(
            "labeling", DatasetPanel(template="labeling/dataset_panel.html", script="labeling/dataset-queue.js")
        )
        # An image of the dataset grid opens in the labeling tool.
        install_image_page(lambda dataset: reverse("labeling:label", args=[dataset.slug]))
        # The read-only image page shows who labelled and reviewed an image, and its prediction.
        from apps.datasets.panels import install_image_facts
        from apps.labeling.image_facts import labeling_image_facts

        install_image_facts("labeling", labeling_image_facts)
