"""Every write of the datasets app, by sub-domain: datasets and classes, splits, ingestion, the one annotation
writer, frozen versions, their YOLO/COCO layout and exports, and imports. The public services are listed here."""

from apps.datasets.boxes import MAX_BOXES, boxes_from_api, boxes_to_api, boxes_validate, predicted_boxes_clean
from apps.datasets.services.annotations import annotation_set, image_status_set
from apps.datasets.services.classes import (
    class_box_counts,
    dataset_class_delete,
    dataset_class_merge,
    dataset_classes_reorder,
)
from apps.datasets.services.datasets import dataset_class_add, dataset_class_rename, dataset_create
from apps.datasets.services.import_archive import dataset_import
from apps.datasets.services.imports import (
    import_job_create,
    import_job_run,
    import_job_run_path,
    import_jobs_sweep,
    import_rollback,
)
from apps.datasets.services.ingest import image_ingest, image_upload_source
from apps.datasets.services.layout import (
    version_export_name,
    version_export_prepare,
    version_export_store,
    version_export_zip,
    version_materialize,
)
from apps.datasets.services.splits import SPLITS, image_split_pin, images_prioritize, split_for
from apps.datasets.services.versions import version_freeze

__all__ = [
    "MAX_BOXES",
    "SPLITS",
    "annotation_set",
    "boxes_from_api",
    "boxes_to_api",
    "boxes_validate",
    "class_box_counts",
    "dataset_class_add",
    "dataset_class_delete",
    "dataset_class_merge",
    "dataset_class_rename",
    "dataset_classes_reorder",
    "dataset_create",
    "dataset_import",
    "image_ingest",
    "image_split_pin",
    "image_status_set",
    "image_upload_source",
    "images_prioritize",
    "import_job_create",
    "import_job_run",
    "predicted_boxes_clean",
    "import_job_run_path",
    "import_jobs_sweep",
    "import_rollback",
    "split_for",
    "version_export_name",
    "version_export_prepare",
    "version_export_store",
    "version_export_zip",
    "version_freeze",
    "version_materialize",
]
