"""What the audit commands share with :mod:`obsbench.cli`, imported lazily.

``obsbench.cli`` registers the audit commands when it is imported, so importing it from the
module that defines them would be circular whenever that module is imported first (as
``pytest --doctest-modules`` does). These proxies resolve ``obsbench.cli`` at call time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def _friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """``obsbench.cli._friendly_errors``, applied when the command runs."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from obsbench.cli import _friendly_errors as friendly

        return friendly(fn)(*args, **kwargs)

    return wrapper


class _ConsoleProxy:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import obsbench.cli

        return getattr(getattr(obsbench.cli, self._name), attr)


console: Any = _ConsoleProxy("console")
err_console: Any = _ConsoleProxy("err_console")
