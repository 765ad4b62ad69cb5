from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "apps.labeling"

    def ready(self):
        from apps.datasets.models import Image
        from apps.datasets.signals import image_ingested
        from apps.labeling.prelabel import on_image_ingested

        image_ingested.connect(on_image_ingested, sender=Image, dispatch_uid="labeling.on_image_ingested")
