"""The obsbench error hierarchy.

Every error obsbench raises derives from :class:`ObsbenchError`, and most also derive from
the builtin a caller would naturally catch (``ValueError``, ``KeyError``, ``ConnectionError``).
A message says what is wrong and ends with a ``Hint:`` naming the fix.
"""

from __future__ import annotations

from collections.abc import Iterable


class ObsbenchError(Exception):
    """Base class of every obsbench error."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\nHint: {hint}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keep errors picklable (they cross process boundaries in the scheduler and CLI).
        return (_rebuild, (type(self), self.message, self.hint, self.__dict__))


def _rebuild(
    cls: type[ObsbenchError], message: str, hint: str | None, state: dict[str, object]
) -> ObsbenchError:
    err = cls.__new__(cls)
    ObsbenchError.__init__(err, message, hint=hint)
    err.__dict__.update(state)
    return err


class ConfigError(ObsbenchError, ValueError):
    """An ``OBSBENCH_*`` setting or a configuration file is invalid."""


class SchemaError(ObsbenchError, ValueError):
    """A frame does not match its canonical dataset schema.

    ``problems`` lists every problem found, one human-readable line each.
    """

    def __init__(self, dataset: str, problems: Iterable[str], *, hint: str | None = None) -> None:
        self.dataset = dataset
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        message = f"{len(self.problems)} problem(s) in '{dataset}' data:\n{lines}"
        super().__init__(
            message,
            hint=hint
            or f"fix the listed columns/rows; `obsbench.schemas.describe('{dataset}')` "
            "shows the expected columns and dtypes.",
        )


class ColumnNotFound(ObsbenchError, KeyError):
    """A column a function needs is absent."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return Exception.__str__(self)


class UnknownName(ObsbenchError, KeyError):
    """A name (dataset, channel, report, rule) is not registered."""

    @classmethod
    def from_choices(cls, kind: str, name: str, known: Iterable[str]) -> UnknownName:
        known_sorted = sorted(known)
        return cls(f"unknown {kind} {name!r}", hint=f"use one of {known_sorted}.")

    def __str__(self) -> str:
        return Exception.__str__(self)


class InvalidParameter(ObsbenchError, ValueError):
    """A parameter has a value outside its domain (unknown method, level not in (0, 1))."""

    @classmethod
    def from_choices(cls, param: str, value: object, choices: Iterable[str]) -> InvalidParameter:
        valid = list(choices)
        return cls(f"invalid {param}={value!r}", hint=f"use one of {valid}.")


class InvalidArgumentType(ObsbenchError, TypeError):
    """An argument has a type the function cannot use."""


class SourceUnavailable(ObsbenchError, ConnectionError):
    """A data source (database, Prometheus, store directory) cannot be reached or read."""


class StoreError(ObsbenchError, OSError):
    """The embedded store cannot read or write a dataset."""


class ReportError(ObsbenchError, RuntimeError):
    """A report run failed (notebook not found, kernel died, rendering failed, timeout)."""


class ParameterError(ReportError, ValueError):
    """Report parameters do not match the notebook's declared ``parameters`` cell.

    ``problems`` lists every problem (unknown name, wrong type), one line each.
    """

    def __init__(self, report: str, problems: Iterable[str], *, hint: str | None = None) -> None:
        self.report = report
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{len(self.problems)} parameter problem(s) for report {report!r}:\n{lines}",
            hint=hint or f"`obsbench report params {report}` lists the declared parameters.",
        )


class ReportCellError(ReportError):
    """A notebook cell raised during a report run (like papermill's ``PapermillExecutionError``).

    Attributes
    ----------
    cell_index
        Index of the failing cell in the executed notebook (0-based).
    exec_count
        Its execution count (the ``In [n]`` number), if known.
    ename, evalue
        The exception's class name and message inside the kernel.
    notebook_path
        The executed notebook, kept for debugging.
    """

    def __init__(
        self,
        *,
        cell_index: int,
        ename: str,
        evalue: str,
        notebook_path: str,
        exec_count: int | None = None,
        report: str = "",
    ) -> None:
        self.cell_index = cell_index
        self.exec_count = exec_count
        self.ename = ename
        self.evalue = evalue
        self.notebook_path = notebook_path
        self.report = report
        where = f"cell {cell_index}" + (f" (In [{exec_count}])" if exec_count else "")
        name = f"report {report!r}: " if report else ""
        super().__init__(
            f"{name}{where} raised {ename}: {evalue}",
            hint=f"open the executed notebook {notebook_path} to see the traceback; "
            "no PDF was produced.",
        )


class AuditError(ObsbenchError, ValueError):
    """An audit event is invalid (missing actor or action, non-JSON details, unknown action).

    Nothing is written when it is raised.
    """


class ChainBroken(ObsbenchError, RuntimeError):
    """The audit hash chain does not verify.

    ``seq`` is the sequence number of the first altered, inserted or missing record and
    ``kind`` one of ``"altered"``, ``"inserted"``, ``"missing"``.
    """

    def __init__(
        self,
        message: str,
        *,
        seq: int | None = None,
        kind: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.seq = seq
        self.kind = kind
        super().__init__(
            message,
            hint=hint
            or "run `obsbench audit verify` for the first bad record and restore it from the "
            "latest verified export; do not prune or sign reports on a broken chain.",
        )
