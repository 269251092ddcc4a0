"""Run a parameterised notebook into a report: papermill -> HTML (no code) -> PDF, atomically.

:func:`run_report` works for any notebook with a ``parameters`` cell:

1. the parameters are validated against the notebook's declared ones (types, unknown
   names) **before** a kernel starts (:mod:`obsbench.reports.params`);
2. papermill executes the notebook on the project's kernel (a kernelspec named
   ``obsbench`` that points at this interpreter, installed into ``sys.prefix`` on first
   use) into a hidden work folder ``<out>/<report>/.<run-id>.partial/``;
3. nbconvert exports HTML without code and WeasyPrint prints the PDF
   (:mod:`obsbench.reports.render`);
4. ``manifest.json`` records the parameters, the input data fingerprint, the package
   version and git commit, timings per stage and the status;
5. the folder is renamed to ``<out>/<report>/<run-id>/``: output appears under its final
   name only when complete.

A failing cell fails the run: the executed notebook (the debug log, with papermill's error
markers) and the manifest are kept in ``<run-id>.failed/``, no PDF or HTML is written, the
failure is recorded in the run history, and :class:`~obsbench.errors.ReportCellError`
names the cell, the exception and the notebook path.

Notebook metadata (``metadata.obsbench``) may set ``title``, ``subtitle``, ``subject``,
``keywords``, ``datasets`` (fingerprinted inputs) and ``period`` (the two parameter
names of the period, default ``["start", "end"]``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obsbench.errors import ObsbenchError, ReportCellError, ReportError
from obsbench.log import get_logger
from obsbench.reports.params import inspect_parameters, validate_parameters

if TYPE_CHECKING:
    from obsbench.reports.history import History

log = get_logger(__name__)

KERNEL_NAME = "obsbench"
NOTEBOOKS_ENV = "OBSBENCH_NOTEBOOKS_DIR"
REPORTS_ENV = "OBSBENCH_REPORTS_DIR"


# ---------------------------------------------------------------------- locating notebooks
def notebooks_dir(path: Path | str | None = None) -> Path:
    """The folder of report notebooks.

    ``path`` if given, else ``$OBSBENCH_NOTEBOOKS_DIR``, else the first ``notebooks/`` folder
    found in the current directory or one of its parents (the repository's ``notebooks/``).
    """
    if path is not None:
        return Path(path)
    if os.environ.get(NOTEBOOKS_ENV):
        return Path(os.environ[NOTEBOOKS_ENV])
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir():
            return folder / "notebooks"
    return here / "notebooks"


def reports_dir(path: Path | str | None = None, *, notebooks: Path | None = None) -> Path:
    """Report output root: ``path``, ``$OBSBENCH_REPORTS_DIR``, or ``reports/`` by the notebooks."""
    if path is not None:
        return Path(path)
    if os.environ.get(REPORTS_ENV):
        return Path(os.environ[REPORTS_ENV])
    return (notebooks or notebooks_dir()).resolve().parent / "reports"


def list_notebooks(folder: Path | str | None = None) -> list[Path]:
    """The report notebooks (``*.ipynb`` with a ``parameters`` cell or not), sorted by name."""
    return sorted(p for p in notebooks_dir(folder).glob("*.ipynb") if not p.name.startswith("."))


def find_notebook(name: str | Path, folder: Path | str | None = None) -> Path:
    """Resolve a report name (``sla``) or a notebook path to an existing ``.ipynb``.

    Raises
    ------
    ReportError
        Naming the folder searched and the reports found there.
    """
    candidate = Path(name)
    if candidate.suffix == ".ipynb" and candidate.exists():
        return candidate.resolve()
    base = notebooks_dir(folder)
    path = base / f"{candidate.stem if candidate.suffix == '.ipynb' else name}.ipynb"
    if path.exists():
        return path.resolve()
    known = [p.stem for p in list_notebooks(base)]
    msg = f"no report notebook {name!r} in {base}"
    raise ReportError(msg, hint=f"known reports: {known}; or give a path to an .ipynb file.")


# ---------------------------------------------------------------------- kernel
def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Make sure kernelspec ``name`` runs this interpreter (install it into ``sys.prefix``).

    Notebooks carry whatever kernel name their author had, and a ``python3`` spec may
    resolve to another Python; the runner always passes this name explicitly.

    Raises
    ------
    ReportError
        If a kernelspec of that name elsewhere (e.g. per user) shadows ours with another
        interpreter.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    me = Path(sys.executable).resolve()

    def current() -> Path | None:
        try:
            return Path(manager.get_kernel_spec(name).argv[0]).resolve()
        except NoSuchKernel:
            return None

    found = current()
    if found == me:
        return name
    import fcntl

    from ipykernel.kernelspec import install

    lock_dir = Path(sys.prefix) / "share" / "jupyter"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / ".obsbench-kernel.lock").open("w") as lock:  # parallel test workers
        fcntl.flock(lock, fcntl.LOCK_EX)
        manager = KernelSpecManager()
        if current() != me:
            install(kernel_name=name, display_name="Python (obsbench)", prefix=sys.prefix)
        manager = KernelSpecManager()
        found = current()
    if found != me:
        msg = f"kernelspec {name!r} runs {found}, not this interpreter {me}"
        raise ReportError(
            msg, hint=f"remove the other spec (`jupyter kernelspec remove {name}`) and retry."
        )
    return name


# ---------------------------------------------------------------------- provenance
def git_commit(path: Path) -> str | None:
    """The commit of the git work tree holding ``path`` (``+dirty`` if modified), if any."""
    try:
        head = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _day(value: object) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def data_fingerprint(
    datasets: list[str], *, home: str | Path | None, start: object = None, end: object = None
) -> dict[str, Any]:
    """Identify the input data: SHA-256 over the Parquet files a report can read.

    Store files are immutable once written (atomic, uniquely named appends), so their
    relative path and size identify their content without reading it. Only day folders
    in ``[start, end]`` count when the period is known.

    Returns
    -------
    ``{"sha256": ..., "files": n, "bytes": n, "datasets": {name: {"files", "bytes"}}}``
    """
    from obsbench.store import Store

    store = Store(home or None)
    first, last = _day(start), _day(end)
    digest = hashlib.sha256()
    per: dict[str, dict[str, int]] = {}
    for dataset in sorted(datasets):
        n = size = 0
        for f in store.files(dataset):
            day = _day(f.parent.name.removeprefix("day="))
            if day is not None and (
                (first and day < first) or (last and day > last + timedelta(days=1))
            ):
                continue
            stat = f.stat()
            digest.update(f"{f.relative_to(store.root).as_posix()}:{stat.st_size}\n".encode())
            n, size = n + 1, size + stat.st_size
        per[dataset] = {"files": n, "bytes": size}
    return {
        "sha256": digest.hexdigest(),
        "files": sum(v["files"] for v in per.values()),
        "bytes": sum(v["bytes"] for v in per.values()),
        "datasets": per,
        "home": str(store.home),
    }


# ---------------------------------------------------------------------- result
@dataclass(frozen=True)
class RunResult:
    """The outcome of :func:`run_report` (failures raise instead; see the manifest)."""

    report: str
    run_id: str
    status: str
    out_dir: Path
    notebook: Path
    html: Path | None
    pdf: Path | None
    pages: int | None
    manifest: dict[str, Any] = field(repr=False)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per stage: execute (kernel_overhead + cells), html, pdf, total."""
        return dict(self.manifest["timings_s"])


def new_run_id(now: datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-xxxxxx``: sorts by time, unique across processes."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def _display(value: object) -> str:
    if value is None:
        return "all"
    if value == "":
        return "(default)"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "all"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _package_version() -> str:
    import obsbench

    return obsbench.__version__


# ---------------------------------------------------------------------- run
def run_report(
    name: str | Path,
    parameters: Mapping[str, object] | None = None,
    *,
    out: Path | str | None = None,
    notebooks: Path | str | None = None,
    run_id: str | None = None,
    report_mode: bool = True,
    page_size: str = "A4",
    isolate_pdf: bool = False,
    timeout_s: float = 900,
    history: History | bool | None = True,
    trigger: str = "manual",
    schedule_id: str | None = None,
    scheduled_for: datetime | None = None,
    kernel_name: str | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RunResult:
    """Execute a report notebook and render it to HTML and PDF.

    Parameters
    ----------
    name
        A report name (``"sla"`` -> ``notebooks/sla.ipynb``) or a notebook path.
    parameters
        Values for declared parameters; strings are coerced to the declared types.
    out
        Output root (default ``reports/`` beside ``notebooks/``); the run goes to
        ``<out>/<report>/<run-id>/``.
    report_mode
        Set the notebook's ``interactive`` parameter to ``False`` (static charts) unless
        given explicitly.
    page_size
        ``"A4"`` or ``"Letter"``.
    isolate_pdf
        Render the PDF in a child process (frees WeasyPrint's memory; for long reports and
        long-lived schedulers).
    timeout_s
        Per-cell execution timeout.
    history
        ``True``: record the run in the database history (errors there are logged, not
        fatal); a :class:`~obsbench.reports.history.History` to use that one; ``False``/
        ``None``: do not record.
    trigger, schedule_id, scheduled_for
        Recorded in the history (``manual``, ``schedule`` or ``catchup``).
    on_stage
        Called with each stage name as it starts (progress display).

    Returns
    -------
    RunResult
        Paths of the executed notebook, HTML, PDF and the manifest.

    Raises
    ------
    ParameterError
        Before any kernel starts, for unknown names or values of the wrong type.
    ReportCellError
        When a cell raises; the executed notebook is kept in ``<run-id>.failed/``.
    ReportError
        When the kernel dies, a cell times out, or rendering fails.
    """
    t_start = time.perf_counter()
    notebook = find_notebook(name, notebooks)
    report = notebook.stem
    specs = inspect_parameters(notebook)
    given = dict(parameters or {})
    if report_mode and "interactive" in specs and "interactive" not in given:
        given["interactive"] = False
    values = validate_parameters(specs, given, report=report)
    effective = {n: values.get(n, s.default) for n, s in specs.items()}

    nb_meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
    meta_cfg: dict[str, Any] = dict(nb_meta.get("obsbench", {}))
    period_names = meta_cfg.get("period", ["start", "end"])
    start, end = (effective.get(period_names[0]), effective.get(period_names[1]))

    root = reports_dir(out, notebooks=notebook.parent)
    run_id = run_id or new_run_id()
    work = root / report / f".{run_id}.partial"
    final = root / report / run_id
    work.mkdir(parents=True, exist_ok=False)
    executed = work / f"{report}.ipynb"
    started_at = datetime.now(UTC)
    timings: dict[str, float] = {}
    manifest: dict[str, Any] = {
        "report": report,
        "run_id": run_id,
        "status": "running",
        "trigger": trigger,
        "schedule_id": schedule_id,
        "scheduled_for": scheduled_for.isoformat() if scheduled_for else None,
        "notebook": str(notebook),
        "parameters": values,
        "effective_parameters": effective,
        "period": {"start": start, "end": end},
        "started_at": started_at.isoformat(),
        "obsbench_version": _package_version(),
        "git_commit": git_commit(notebook.parent),
        "python": sys.version.split()[0],
        "page_size": page_size,
        "timings_s": timings,
        "outputs": {"notebook": executed.name},
    }
    hist = _history(history)
    _safe(hist, "start", run_id=run_id, report=report, trigger=trigger,
          schedule_id=schedule_id, scheduled_for=scheduled_for, parameters=values,
          started_at=started_at)  # fmt: skip

    def stage(label: str) -> None:
        if on_stage:
            on_stage(label)

    try:
        stage("fingerprint")
        t0 = time.perf_counter()
        datasets = list(meta_cfg.get("datasets", []))
        manifest["input"] = (
            data_fingerprint(datasets, home=effective.get("data_source"), start=start, end=end)
            if datasets
            else {"sha256": None, "files": 0, "bytes": 0, "datasets": {}}
        )
        timings["fingerprint"] = time.perf_counter() - t0

        stage("execute")
        t0 = time.perf_counter()
        import nbconvert  # noqa: F401
        import papermill  # noqa: F401  (imported here so its cost is its own stage)
        import weasyprint  # noqa: F401

        kernel = kernel_name or ensure_kernel()
        timings["imports"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        kept = final.with_name(f"{final.name}.failed") / executed.name  # where a failure is kept
        nb = _execute(notebook, executed, values, kernel, timeout_s, report, kept)
        timings["execute"] = time.perf_counter() - t0
        cells = sum(
            float(c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0)
            for c in nb.cells
        )
        timings["cells"] = cells
        timings["kernel_overhead"] = max(timings["execute"] - cells, 0.0)
        manifest |= _manifest_entries(nb)

        stage("html")
        t0 = time.perf_counter()
        from obsbench.reports.render import ReportMeta, notebook_to_html

        meta = ReportMeta(
            title=meta_cfg.get("title") or report.replace("_", " ").title(),
            subtitle=meta_cfg.get("subtitle", ""),
            subject=meta_cfg.get("subject", ""),
            keywords=tuple(meta_cfg.get("keywords", ())),
            period=f"{start} – {end}" if start and end else "",
            generated=started_at.isoformat(timespec="seconds"),
            generated_text=started_at.strftime("%Y-%m-%d %H:%M UTC"),
            run_id=run_id,
            fingerprint=(manifest["input"]["sha256"] or "n/a")[:16],
            version=manifest["obsbench_version"],
            commit=manifest["git_commit"],
            parameters=tuple(
                (k, _display(v)) for k, v in effective.items() if k not in {"interactive"}
            ),
            page_size=page_size,
        )
        rendered = notebook_to_html(nb, meta)
        html_path = work / f"{report}.html"
        html_path.write_text(rendered.html, encoding="utf-8")
        manifest["sections"] = list(rendered.sections)
        manifest["stderr"] = [s[-2000:] for s in rendered.stderr]
        timings["html"] = time.perf_counter() - t0

        stage("pdf")
        t0 = time.perf_counter()
        pdf_path = work / f"{report}.pdf"
        pages = _pdf(rendered.html, html_path, pdf_path, isolate=isolate_pdf)
        timings["pdf"] = time.perf_counter() - t0
    except BaseException as exc:
        _fail(manifest, work, final, exc, timings, t_start, hist, run_id)
        raise
    manifest["outputs"] |= {"html": html_path.name, "pdf": pdf_path.name}
    manifest["pages"] = pages
    manifest["status"] = "ok"
    manifest["finished_at"] = datetime.now(UTC).isoformat()
    timings["total"] = time.perf_counter() - t_start
    _write_json(work / "manifest.json", manifest)
    os.replace(work, final)
    _index(root)
    _safe(hist, "finish", run_id, status="ok", out_dir=str(final),
          pdf=str(final / pdf_path.name), fingerprint=manifest["input"]["sha256"])  # fmt: skip
    log.info(
        "report run ok",
        extra={"fields": {"report": report, "run_id": run_id, "timings_s": timings}},
    )
    return RunResult(
        report, run_id, "ok", final, final / executed.name, final / html_path.name,
        final / pdf_path.name, pages, manifest,
    )  # fmt: skip


def _history(history: History | bool | None) -> History | None:
    if history is None or history is False:
        return None
    if history is True:
        try:
            from obsbench.reports.history import History

            return History()
        except ObsbenchError as exc:
            log.warning("report history unavailable: %s", exc.message)
            return None
    return history


def _safe(hist: History | None, method: str, *args: Any, **kwargs: Any) -> None:
    if hist is None:
        return
    try:
        getattr(hist, method)(*args, **kwargs)
    except Exception as exc:
        log.warning("could not record the report run in the history: %s", exc)


class _PapermillNoise:
    """Drop papermill's own parameter-parsing warnings: obsbench validated the parameters."""

    def filter(self, record: Any) -> bool:
        text = record.getMessage()
        return not text.startswith(("Unable to parse line", "Passed unknown parameter"))


def _execute(
    notebook: Path,
    executed: Path,
    values: dict[str, object],
    kernel_name: str,
    timeout_s: float,
    report: str,
    kept: Path,
) -> Any:
    import logging

    import papermill as pm

    noise = _PapermillNoise()
    noisy = [logging.getLogger(n) for n in ("papermill", "papermill.translators")]
    for logger in noisy:
        logger.addFilter(noise)
    try:
        return pm.execute_notebook(
            str(notebook),
            str(executed),
            parameters=values,
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=False,
            cwd=str(notebook.parent),
            start_timeout=120,
            execution_timeout=timeout_s,
        )
    except pm.PapermillExecutionError as exc:
        raise ReportCellError(
            cell_index=exc.cell_index,
            exec_count=exc.exec_count,
            ename=exc.ename,
            evalue=exc.evalue,
            notebook_path=str(kept),
            report=report,
        ) from None
    except ObsbenchError:
        raise
    except Exception as exc:  # DeadKernelError, CellTimeoutError, kernel start failures
        msg = f"report {report!r}: execution stopped: {type(exc).__name__}: {exc}"
        raise ReportError(
            msg, hint=f"see the executed notebook {kept}; raise the timeout if needed."
        ) from exc
    finally:
        for logger in noisy:
            logger.removeFilter(noise)


def _pdf(html: str, html_path: Path, pdf_path: Path, *, isolate: bool) -> int:
    from obsbench.reports.render import html_file_to_pdf_isolated, html_to_pdf

    try:
        if isolate:
            return html_file_to_pdf_isolated(html_path, pdf_path)
        return html_to_pdf(html, pdf_path)
    except ObsbenchError:
        raise
    except Exception as exc:
        pdf_path.unlink(missing_ok=True)
        msg = f"PDF rendering failed: {type(exc).__name__}: {exc}"
        raise ReportError(msg, hint="check the HTML next to the executed notebook.") from exc


def _manifest_entries(nb: Any) -> dict[str, Any]:
    """Entries a notebook handed to the manifest with ``record_in_manifest``."""
    from obsbench.reports.data import MANIFEST_MIMETYPE

    entries: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if MANIFEST_MIMETYPE in data:
                entries |= dict(data[MANIFEST_MIMETYPE])
    return entries


def _fail(
    manifest: dict[str, Any],
    work: Path,
    final: Path,
    exc: BaseException,
    timings: dict[str, float],
    t_start: float,
    hist: History | None,
    run_id: str,
) -> None:
    """Record a failed run: no PDF/HTML, notebook and manifest kept in ``<run-id>.failed``."""
    for leftover in ("pdf", "html"):
        with contextlib.suppress(OSError):
            (work / f"{manifest['report']}.{leftover}").unlink(missing_ok=True)
    error: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ObsbenchError):
        error["message"] = exc.message
    if isinstance(exc, ReportCellError):
        error |= {"cell_index": exc.cell_index, "exec_count": exc.exec_count,
                  "ename": exc.ename, "evalue": exc.evalue}  # fmt: skip
    failed = final.with_name(f"{final.name}.failed")
    if isinstance(exc, ReportCellError):
        error["notebook_path"] = exc.notebook_path
    manifest |= {"status": "failed", "error": error, "finished_at": datetime.now(UTC).isoformat()}
    manifest["outputs"] = {k: v for k, v in manifest["outputs"].items() if k == "notebook"}
    timings["total"] = time.perf_counter() - t_start
    with contextlib.suppress(OSError):
        _write_json(work / "manifest.json", manifest)
        os.replace(work, failed)
    if not failed.exists():  # could not rename: do not leave a half-written run around
        shutil.rmtree(work, ignore_errors=True)
    _index(final.parent.parent)
    _safe(hist, "finish", run_id, status="failed", out_dir=str(failed),
          error=f"{error['type']}: {error['message']}")  # fmt: skip
    log.error(
        "report run failed",
        extra={"fields": {"report": manifest["report"], "run_id": run_id, "error": error}},
    )


def _index(root: Path) -> None:
    from obsbench.reports.history import write_index

    try:
        write_index(root)
    except OSError as exc:  # pragma: no cover - index is a convenience
        log.warning("could not update the report index: %s", exc)
