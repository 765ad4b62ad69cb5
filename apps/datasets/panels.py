"""What a later app adds to the dataset page (the installed-answer pattern of DESIGN.md): panels, and the page an
image of the grid opens. The later app installs them in ``AppConfig.ready()``; datasets renders what is installed
and never names a later app's URLs."""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetPanel:
    template: str  # included in the dataset page's side column, with the page's context (dataset, is_engineer, …)
    script: str = ""  # a static path, loaded at the end of the page


_panels: dict[str, DatasetPanel] = {}


def install_dataset_panel(name: str, panel: DatasetPanel | None) -> DatasetPanel | None:
    """Install (or, with None, remove) the panel called ``name``. Returns the one it replaces, so a test can put it
    back. Panels show in the order they were first installed (the apps' order in INSTALLED_APPS)."""
    previous = _panels.get(name)
    if panel is None:
        _panels.pop(name, None)
    else:
        _panels[name] = panel
    return previous


def dataset_panels() -> list[DatasetPanel]:
    return list(_panels.values())


ImagePage = Callable[[object], str]  # dataset -> the URL an image of its grid opens, "?image=<id>" appended

_image_page: ImagePage | None = None


def install_image_page(fn: ImagePage | None) -> ImagePage | None:
    """Install (or, with None, remove) the page a grid image opens; returns the one it replaces."""
    global _image_page
    previous, _image_page = _image_page, fn
    return previous


def image_page_for(dataset) -> str | None:
    """Where a grid image of ``dataset`` opens; None when no app installed a page (the image file opens)."""
    return _image_page(dataset) if _image_page is not None else None


@dataclass(frozen=True)
class ImageFacts:
    """What a later app knows about one image, for the read-only image page: a titled table and boxes to draw."""

    title: str
    rows: list[tuple[str, str]]  # (label, text)
    boxes: list[dict] | None = None  # [{"class_id", "box": [x, y, w, h], "confidence"?}] drawn as a toggleable layer
    link: tuple[str, str] | None = None  # (label, url): where to act on the image (e.g. label it)


ImageFactsProvider = Callable[[object, object], list[ImageFacts]]  # (image, user) -> facts

_image_facts: dict[str, ImageFactsProvider] = {}


def install_image_facts(name: str, fn: ImageFactsProvider | None) -> ImageFactsProvider | None:
    """Install (or, with None, remove) what the app called ``name`` shows on the image page; returns the one it
    replaces."""
    previous = _image_facts.get(name)
    if fn is None:
        _image_facts.pop(name, None)
    else:
        _image_facts[name] = fn
    return previous


def image_facts_for(image, user) -> list[ImageFacts]:
    return [fact for fn in _image_facts.values() for fact in fn(image, user)]
