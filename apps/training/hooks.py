"""Questions training asks that only a later app can answer (the question-and-answer pattern of DESIGN.md).

Training declares each question as a small function with a safe default; the app that knows the answer installs
it from its ``AppConfig.ready()``, e.g. deployments::

    from apps.training import hooks
    hooks.install_production_model_provider(selectors.production_model)
"""

from collections.abc import Callable

from apps.training.models import ModelVersion

ProductionModelProvider = Callable[[object], ModelVersion | None]

_production_model_provider: ProductionModelProvider | None = None


def install_production_model_provider(fn: ProductionModelProvider | None) -> ProductionModelProvider | None:
    """Install (or, with None, remove) the function that names the model live in production for a dataset.
    Returns the one it replaces, so a test can put it back."""
    global _production_model_provider
    previous, _production_model_provider = _production_model_provider, fn
    return previous


def production_model_for(dataset) -> ModelVersion | None:
    """The model in production for ``dataset``, or None when nothing is deployed or no app answers the question."""
    if _production_model_provider is None:
        return None
    return _production_model_provider(dataset)


ModelLinks = Callable[[ModelVersion], list[tuple[str, str]]]

_model_links: ModelLinks | None = None


def install_model_links(fn: ModelLinks | None) -> ModelLinks | None:
    """Install (or, with None, remove) the function that lists the pages a later app has for a model, as
    ``(label, url)`` pairs (the model page, its promote page, deployments, monitoring). Returns the one it replaces."""
    global _model_links
    previous, _model_links = _model_links, fn
    return previous


def model_links_for(model: ModelVersion) -> list[tuple[str, str]]:
    """The pages of later apps about ``model``, for the run page to lead on to; empty when none is installed."""
    return list(_model_links(model)) if _model_links is not None else []
