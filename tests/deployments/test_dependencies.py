"""DESIGN.md's dependency rule for deployments: it never imports monitoring, the one app after it, nor names its URLs
(monitoring answers deployments' questions, and installs its links, through ``apps.deployments.hooks``)."""

import ast
import re
from pathlib import Path

import pytest
from django.urls import reverse

import apps.deployments
from apps.deployments import hooks
from tests.builders import dataset_row, deployment_row, model_row, robot_row

LATER = ("apps.monitoring",)


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_deployments_never_imports_a_later_app():
    root = Path(apps.deployments.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 10  # the scan saw the app (services/, templatetags/, management/ included)
    offending = {
        str(path.relative_to(root)): name
        for path in files
        for name in _imports(path)
        if any(name == later or name.startswith(later + ".") for later in LATER)
    }
    assert offending == {}


def test_deployments_never_names_a_later_apps_urls():
    root = Path(apps.deployments.__file__).parent
    files = sorted(path for path in root.rglob("*") if path.suffix in {".py", ".html", ".js"})
    assert len([path for path in files if path.suffix == ".html"]) > 5  # the scan saw the templates
    # A URL name ('monitoring:dataset' in reverse() or {% url %}) or a path written out ("/monitoring/...").
    named = re.compile(r"""["']monitoring:|/monitoring/""")
    offending = sorted(str(path.relative_to(root)) for path in files if named.search(path.read_text()))
    assert offending == []


@pytest.mark.django_db
def test_monitoring_installs_its_links_on_the_deployments_pages_and_without_them_the_pages_stand(client, ml_engineer):
    dataset = dataset_row("linked")
    model = model_row(dataset, 1)
    deployment_row(dataset, model)
    robot_row("00e2f1e7", running=model)
    client.force_login(ml_engineer)
    field = reverse("monitoring:dataset", args=["linked"])
    pages = [
        reverse("deployments:home"),
        reverse("deployments:dataset", args=["linked"]),
        reverse("deployments:model_list"),
    ]

    for url in pages:
        assert f'href="{field}"' in client.get(url).content.decode()
    assert f'href="{field}?robot=00e2f1e7"' in client.get(pages[0]).content.decode()

    installed = hooks.install_dataset_links(None)
    try:
        for url in pages:
            response = client.get(url)
            assert response.status_code == 200 and f'href="{field}' not in response.content.decode()
    finally:
        hooks.install_dataset_links(installed)
