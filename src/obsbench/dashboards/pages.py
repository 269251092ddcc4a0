"""The page registry: every module in ``apps/`` that defines ``PAGE`` and ``create()`` is a page.

Adding a page is adding one module::

    # apps/logs.py
    PAGE = PageSpec(slug="logs", title="Logs", roles=("operator",), groups=("services",))


    def create():
        return LogsPage().servable()

:func:`discover` finds the modules (no Panel import happens until a page is built), and
:func:`pages_for` tells which pages a set of roles may open. The role table in
``docs/dashboards.md`` is generated from the same declarations.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from obsbench.dashboards.auth import ROLES, allowed
from obsbench.errors import ConfigError

__all__ = ["DEFAULT_APPS", "Page", "PageSpec", "discover", "pages_for"]

log = logging.getLogger("obsbench.dashboards.pages")

#: ``apps/`` of the source tree (``obsbench serve --apps`` overrides it).
DEFAULT_APPS = Path(__file__).resolve().parents[3] / "apps"


@dataclass(frozen=True)
class PageSpec:
    """What a page module declares.

    Attributes
    ----------
    slug
        URL path (``/<slug>``).
    title
        Navigation label.
    roles
        Roles that may open the page (``admin`` always may).
    groups
        Live-model view groups the page reads (:data:`obsbench.dashboards.live.GROUP_SOURCES`).
    order
        Position in the navigation.
    """

    slug: str
    title: str
    roles: tuple[str, ...]
    groups: tuple[str, ...] = ()
    order: int = 100

    def __post_init__(self) -> None:
        unknown = [r for r in self.roles if r not in ROLES]
        if unknown:
            msg = f"page {self.slug!r} names unknown role(s) {unknown}"
            raise ConfigError(msg, hint=f"use some of {list(ROLES)}.")


@dataclass(frozen=True)
class Page:
    """A discovered page: its spec and the function that builds one session's view."""

    spec: PageSpec
    create: Callable[[], Any]
    module: str


def _load(path: Path) -> ModuleType:
    name = f"obsbench_apps.{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        msg = f"cannot import the page module {path}"
        raise ConfigError(msg, hint="check the file is a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def discover(apps: Path | str | None = None) -> list[Page]:
    """The pages of an ``apps/`` folder, in navigation order.

    Raises
    ------
    ConfigError
        If the folder does not exist, holds no page, or two pages share a slug.
    """
    folder = Path(apps) if apps else DEFAULT_APPS
    if not folder.is_dir():
        msg = f"no apps folder at {folder}"
        raise ConfigError(msg, hint="pass --apps DIR (the repository's apps/ folder).")
    pages: list[Page] = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            module = _load(path)
        except ImportError as exc:  # a page whose feature is not installed is left out
            log.warning("page module %s not loaded: %s", path.name, exc)
            continue
        spec = getattr(module, "PAGE", None)
        create = getattr(module, "create", None)
        if isinstance(spec, PageSpec) and callable(create):
            pages.append(Page(spec, create, module.__name__))
    slugs = [p.spec.slug for p in pages]
    dupes = sorted({s for s in slugs if slugs.count(s) > 1})
    if dupes:
        msg = f"several pages use the slug(s) {dupes}"
        raise ConfigError(msg, hint="give every page module a unique PAGE.slug.")
    if not pages:
        msg = f"no page module (PAGE + create()) in {folder}"
        raise ConfigError(msg, hint="see obsbench.dashboards.pages.")
    return sorted(pages, key=lambda p: (p.spec.order, p.spec.slug))


def pages_for(roles: Iterable[str], pages: Iterable[Page]) -> list[Page]:
    """The pages a user with ``roles`` may open."""
    have = frozenset(roles)
    return [p for p in pages if allowed(have, p.spec.roles)]
