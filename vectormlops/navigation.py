"""The navigation bar: each entry appears only to roles that can use it."""

from django.urls import reverse

from vectormlops.permissions import ANNOTATOR, ML_ENGINEER, REVIEWER, user_roles

ROLE_LABELS = {ANNOTATOR: "annotators", REVIEWER: "reviewers", ML_ENGINEER: "ML engineers"}

# (label, url name, role needed)
ENTRIES = [
    ("Datasets", "datasets:list", ANNOTATOR),
    ("Label", "labeling:home", ANNOTATOR),
    ("Review", "labeling:review_home", REVIEWER),
    ("Training runs", "training:run_list", ML_ENGINEER),
    ("Retraining", "training:retraining", ML_ENGINEER),
    ("Models", "deployments:model_list", ML_ENGINEER),
    ("Deployments", "deployments:home", ML_ENGINEER),
    ("Monitoring", "monitoring:home", ML_ENGINEER),
]


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_entries": []}
    roles = user_roles(user)
    entries = [
        {"label": label, "url": reverse(name), "role": role, "for": ROLE_LABELS[role]}
        for label, name, role in ENTRIES
        if role in roles
    ]
    # The entry whose address is the longest prefix of this page's is the active one (/labeling/stats/ is not
    # under /label/).
    current = [e for e in entries if request.path.startswith(e["url"])]
    if current:
        max(current, key=lambda e: len(e["url"]))["active"] = True
    return {"nav_entries": entries, "user_roles": roles}
