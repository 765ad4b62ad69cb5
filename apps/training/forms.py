"""The start-a-run form (hyperparameters); the view passes it to the service, which does the real checks."""

from django import forms

from apps.datasets.models import Dataset, DatasetVersion
from apps.training import selectors


class TrainingRunForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), to_field_name="slug")
    version = forms.ModelChoiceField(
        queryset=DatasetVersion.objects.none(), required=False, empty_label="Freeze a new version now"
    )
    base = forms.ChoiceField(
        required=False,
        help_text="Automatic: the production model when one exists, else yolov8n.yaml. Register more weights "
        "files under Base models.",
    )
    epochs = forms.IntegerField(min_value=1, max_value=10_000, initial=30)
    imgsz = forms.IntegerField(min_value=32, max_value=4096, initial=256, help_text="A multiple of 32")
    batch = forms.IntegerField(min_value=1, max_value=1024, initial=8)
    patience = forms.IntegerField(min_value=1, max_value=10_000, initial=50)
    seed = forms.IntegerField(initial=0)
    device = forms.CharField(max_length=32, initial="auto", help_text="auto = CUDA when present, else CPU")

    def __init__(self, *args, dataset: Dataset | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        slug = self.data.get("dataset") if self.is_bound else (dataset.slug if dataset else None)
        self.fields["version"].queryset = DatasetVersion.objects.filter(dataset__slug=slug).order_by("-number")
        chosen = Dataset.objects.filter(slug=slug).first() if slug else None
        self.fields["base"].choices = [("", "Automatic")] + [
            (choice["value"], choice["label"]) for choice in selectors.base_choices(chosen)
        ]
        initial_base = self.initial.get("base")
        if initial_base and initial_base not in dict(self.fields["base"].choices):
            self.fields["base"].choices.append((initial_base, f"{initial_base} (retrain policy)"))
        for field in self.fields.values():
            field.widget.attrs.setdefault(
                "class", "form-select" if isinstance(field, forms.ChoiceField) else "form-control"
            )

    def run_arguments(self) -> dict:
        """The cleaned fields as ``services.training_run_start`` takes them (blank base: the service chooses)."""
        values = dict(self.cleaned_data)
        values["base"] = values["base"] or None
        return values


class BaseModelForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"class": "form-control"}))
    weights = forms.FileField(
        help_text="A PyTorch .pt checkpoint of an ultralytics detection model (e.g. a pretrained YOLO downloaded "
        "elsewhere). It is loaded safely on a training worker before it can be used.",
        widget=forms.ClearableFileInput(attrs={"class": "form-control", "accept": ".pt"}),
    )
    note = forms.CharField(required=False, max_length=200, widget=forms.TextInput(attrs={"class": "form-control"}))


class RetrainPolicyForm(forms.Form):
    """A dataset's retrain policy, as ML engineers edit it on the site (saved through retrain_policy_set)."""

    enabled = forms.BooleanField(
        required=False, initial=True, widget=forms.CheckboxInput(attrs={"class": "form-check-input"})
    )
    min_new_approved_images = forms.IntegerField(
        min_value=1,
        initial=50,
        label="Retrain after this many new approved images",
        widget=forms.NumberInput(attrs={"class": "form-control"}),
    )
    max_model_age_days = forms.IntegerField(
        min_value=1,
        initial=7,
        label="…or when the model and the last run are older than (days)",
        widget=forms.NumberInput(attrs={"class": "form-control"}),
    )
    epochs = forms.IntegerField(
        min_value=1, max_value=1000, initial=30, widget=forms.NumberInput(attrs={"class": "form-control"})
    )
    imgsz = forms.IntegerField(
        min_value=32,
        max_value=2048,
        initial=320,
        label="Image size",
        widget=forms.NumberInput(attrs={"class": "form-control"}),
    )
    batch = forms.IntegerField(
        min_value=1, max_value=512, initial=16, widget=forms.NumberInput(attrs={"class": "form-control"})
    )
    base = forms.CharField(
        required=False,
        max_length=255,
        help_text="Blank: fine-tune the production model when one exists, else yolov8n.yaml",
        widget=forms.TextInput(attrs={"class": "form-control"}),
    )


class RetrainScheduleForm(forms.Form):
    """How often Celery beat looks for datasets due for retraining."""

    every_minutes = forms.IntegerField(
        min_value=1,
        max_value=7 * 24 * 60,
        label="Check every (minutes)",
        widget=forms.NumberInput(attrs={"class": "form-control"}),
    )
    enabled = forms.BooleanField(required=False, widget=forms.CheckboxInput(attrs={"class": "form-check-input"}))
