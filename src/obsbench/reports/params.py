"""Declared report parameters: read them from the notebook, validate values before a kernel starts.

A report notebook declares its parameters in the code cell tagged ``parameters`` (the
papermill convention), one annotated assignment per parameter with a comment as help::

    start: str = "2024-01-01"  # first day of the period (inclusive, UTC)
    services: list[str] | None = None  # services to include; None = all
    var_level: float = 0.99  # VaR confidence level

:func:`inspect_parameters` parses that cell with :mod:`ast` (nothing is executed) into
:class:`ParameterSpec` objects; :func:`validate_parameters` checks names and types and
coerces command-line strings (``--param var_level=0.975``), raising one
:class:`~obsbench.errors.ParameterError` that names every problem. A ``str`` parameter
whose default is an ISO date (``"2024-01-01"``) is a date parameter: its values must be
ISO dates too. Supported annotations: ``str``, ``int``, ``float``, ``bool``, ``list[str]``,
``list[int]``, ``list[float]``, ``dict`` and any of them ``| None``.

Examples
--------
>>> import json
>>> spec = ParameterSpec("var_level", "float", 0.99, "VaR confidence level")
>>> validate_parameters({"var_level": spec}, {"var_level": "0.975"}, report="risk")
{'var_level': 0.975}
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from obsbench.errors import ParameterError, ReportError

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BASE_TYPES = ("str", "int", "float", "bool", "list[str]", "list[int]", "list[float]", "dict")


@dataclass(frozen=True)
class ParameterSpec:
    """One declared parameter.

    Attributes
    ----------
    name
        The variable name.
    type
        The annotation as written, normalised (``"list[str] | None"``).
    default
        The default value (a Python literal).
    help
        The trailing comment of the line, if any.
    """

    name: str
    type: str
    default: Any
    help: str = ""

    @property
    def optional(self) -> bool:
        """Whether ``None`` is allowed."""
        return self.type.endswith("| None") or self.type == "None"

    @property
    def base(self) -> str:
        """The annotation without ``| None``."""
        return self.type.removesuffix("| None").strip()

    @property
    def is_date(self) -> bool:
        """A ``str`` parameter whose default is an ISO date."""
        return (
            self.base == "str"
            and isinstance(self.default, str)
            and bool(_ISO_DATE.match(self.default))
        )

    def describe(self) -> str:
        """``name: type = default  # help``."""
        kind = "date (YYYY-MM-DD)" if self.is_date else self.type
        tail = f"  # {self.help}" if self.help else ""
        return f"{self.name}: {kind} = {self.default!r}{tail}"


def _load_notebook(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except FileNotFoundError:
        msg = f"notebook {path} does not exist"
        raise ReportError(
            msg, hint="`obsbench report list --notebooks` shows the reports."
        ) from None
    except json.JSONDecodeError as exc:
        msg = f"notebook {path} is not valid JSON: {exc}"
        raise ReportError(msg, hint="open and re-save it in JupyterLab.") from None


def parameters_cell(nb: Mapping[str, Any]) -> tuple[int, str] | None:
    """Index and source of the first code cell tagged ``parameters``, if any."""
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get(
            "tags", []
        ):
            source = cell.get("source", "")
            return i, "".join(source) if isinstance(source, list) else source
    return None


def _annotation(node: ast.expr | None) -> str:
    if node is None:
        return "any"
    text = ast.unparse(node).replace("Optional[", "").replace("typing.", "")
    return re.sub(r"\s+", " ", text)


def inspect_parameters(notebook: Path | str) -> dict[str, ParameterSpec]:
    """The parameters ``notebook`` declares, in order (empty if it has no ``parameters`` cell).

    Raises
    ------
    ReportError
        If the notebook is missing or unreadable, or the ``parameters`` cell is not plain
        literal assignments (it must be parseable without running it).
    """
    path = Path(notebook)
    found = parameters_cell(_load_notebook(path))
    if found is None:
        return {}
    _, source = found
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        msg = f"the parameters cell of {path.name} does not parse: {exc}"
        raise ReportError(msg, hint="keep it to `name: type = literal  # help` lines.") from None
    comments = _line_comments(source)
    specs: dict[str, ParameterSpec] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name, annotation, value = stmt.target.id, _annotation(stmt.annotation), stmt.value
        elif (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            name, annotation, value = stmt.targets[0].id, "any", stmt.value
        else:
            continue
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError:
            msg = f"parameter {name!r} in {path.name} has a non-literal default"
            raise ReportError(msg, hint="use a literal (string, number, list, None).") from None
        if annotation == "any" and default is not None:
            annotation = _infer(default)
        specs[name] = ParameterSpec(name, annotation, default, comments.get(stmt.lineno, ""))
    return specs


def _infer(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, list):
        inner = {_infer(v) for v in value}
        return f"list[{inner.pop()}]" if len(inner) == 1 else "list[str]"
    return type(value).__name__


def _line_comments(source: str) -> dict[int, str]:
    import io
    import tokenize

    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except tokenize.TokenError:  # pragma: no cover - ast.parse succeeded first
        pass
    return out


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """``["k=v", ...]`` (command-line ``--param``) to a dict of strings.

    Raises
    ------
    ParameterError
        For an item without ``=``.
    """
    out: dict[str, str] = {}
    bad = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            bad.append(f"{pair!r} is not of the form name=value")
            continue
        out[name.strip()] = value
    if bad:
        where = "(command line)"
        raise ParameterError(where, bad, hint="write --param name=value.")
    return out


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _coerce(spec: ParameterSpec, value: object) -> object:
    """Coerce ``value`` to the spec's type; raise ``ValueError`` with a reason."""
    if value is None or (
        isinstance(value, str) and spec.optional and value.lower() in {"none", ""}
    ):
        if spec.optional or spec.default is None:
            return None
        msg = "None is not allowed"
        raise ValueError(msg)
    base = spec.base
    if base in ("any", "None"):
        return value
    if base == "str":
        text = str(value) if not isinstance(value, str) else value
        if spec.is_date:
            try:
                date.fromisoformat(text)
            except ValueError:
                msg = f"{text!r} is not an ISO date (YYYY-MM-DD)"
                raise ValueError(msg) from None
        return text
    if base == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        msg = f"{value!r} is not a boolean (true/false)"
        raise ValueError(msg)
    if base in ("int", "float"):
        return _number(value, base)
    if base.startswith("list["):
        inner = ParameterSpec(spec.name, base[5:-1], None)
        if isinstance(value, str):
            text = value.strip()
            items: list[object] = (
                json.loads(text)
                if text.startswith("[")
                else [p.strip() for p in text.split(",") if p.strip()]
            )
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            msg = f"{value!r} is not a list (give a,b,c or a JSON list)"
            raise ValueError(msg)
        return [_coerce(inner, item) for item in items]
    if base == "dict":
        parsed = json.loads(value) if isinstance(value, str) else value
        if not isinstance(parsed, dict):
            msg = f"{value!r} is not a JSON object"
            raise ValueError(msg)
        return parsed
    msg = f"unsupported declared type {spec.type!r} (use one of {list(_BASE_TYPES)})"
    raise ValueError(msg)


def _number(value: object, base: str) -> int | float:
    bad = f"{value!r} is not a valid {base}"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(bad)
    try:
        if base == "float":
            return float(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(bad)
            return int(value)
        return int(value)
    except ValueError:
        raise ValueError(bad) from None


def validate_parameters(
    specs: Mapping[str, ParameterSpec], values: Mapping[str, object], *, report: str
) -> dict[str, object]:
    """Check ``values`` against the declared ``specs`` and return them coerced.

    Strings (from the command line or YAML) are converted to the declared type; other
    values must already fit it. Only the given values are returned: the notebook's own
    defaults apply to the rest.

    Raises
    ------
    ParameterError
        Listing every unknown name (with the closest declared name) and every value of the
        wrong type.
    """
    import difflib

    problems: list[str] = []
    out: dict[str, object] = {}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, list(specs), n=1)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown parameter {name!r}{suggestion}")
            continue
        try:
            out[name] = _coerce(spec, value)
        except (ValueError, json.JSONDecodeError) as exc:
            problems.append(f"{name}: {exc} (declared {spec.type})")
    if problems:
        declared = ", ".join(specs) or "(none)"
        raise ParameterError(report, problems, hint=f"declared parameters: {declared}.")
    return out
