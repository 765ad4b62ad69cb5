"""DESIGN.md's dependency rule for deployments: it never imports monitoring, the one app after it (monitoring answers
deployments' questions through ``apps.deployments.hooks``)."""

import ast
from pathlib import Path

import apps.deployments

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
