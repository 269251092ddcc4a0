"""Executed notebook -> HTML without code (nbconvert) -> paged PDF (WeasyPrint).

The HTML comes from the ``obsbench`` nbconvert template in ``templates/obsbench/``, which
extends ``basic`` (cell bodies only: the ``lab`` template's 340 KB of CSS and its
``break-inside: avoid-page`` rule leave near-blank pages) and adds a title page, a table of
contents and the report metadata. Code, prompts and anchor links are excluded; cells tagged
``remove-cell`` are dropped; stderr output (warnings) is kept out of the PDF and returned so
the runner records it in the manifest. ``templates/print.css`` lays out the pages.

Heavy imports (nbconvert, WeasyPrint) happen inside the functions.
"""

from __future__ import annotations

import copy
import html as html_lib
import re
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from obsbench.errors import ReportError

TOC_MARKER = "<!--OBSBENCH-TOC-->"
REMOVE_TAGS = ("remove-cell", "hide-in-report")
PAGE_SIZES = ("A4", "Letter")


def templates_dir() -> Path:
    """Folder holding ``print.css`` and the ``obsbench`` nbconvert template."""
    return Path(str(resources.files("obsbench.reports") / "templates"))


def print_css() -> str:
    """The paged-media stylesheet."""
    return (templates_dir() / "print.css").read_text(encoding="utf-8")


@dataclass(frozen=True)
class ReportMeta:
    """What the title page, running header/footer and PDF metadata show.

    Attributes
    ----------
    title
        Report title (PDF Title, running header).
    period
        Human-readable period (running header), e.g. ``2024-01-01 – 2024-01-31``.
    generated
        ISO timestamp of the run (PDF creation date); ``generated_text`` is how it prints.
    parameters
        ``(name, value)`` pairs printed on the title page.
    """

    title: str
    period: str = ""
    subtitle: str = ""
    kicker: str = "obsbench report"
    author: str = "obsbench"
    subject: str = ""
    keywords: tuple[str, ...] = ()
    generated: str = ""
    generated_text: str = ""
    run_id: str = ""
    fingerprint: str = ""
    version: str = ""
    commit: str | None = None
    parameters: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    page_size: str = "A4"


@dataclass(frozen=True)
class HtmlResult:
    html: str
    stderr: tuple[str, ...]
    sections: tuple[str, ...]


def _strip_stderr(nb: Any) -> list[str]:
    """Remove stderr stream outputs from ``nb`` (in place) and return their text."""
    removed: list[str] = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                removed.append(str(out.get("text", "")))
            else:
                kept.append(out)
        cell["outputs"] = kept
    return removed


_HEADING = re.compile(r"<h([23])(\s[^>]*)?>(.*?)</h\1>", re.DOTALL)
_ID = re.compile(r'\sid="([^"]+)"')
_TAGS = re.compile(r"<[^>]+>")


def _toc(body: str) -> tuple[str, str, tuple[str, ...]]:
    """Give every ``h2``/``h3`` of ``body`` an id; return (body, TOC list, h2 titles)."""
    items: list[str] = []
    titles: list[str] = []
    used: set[str] = set()

    def anchor(match: re.Match[str]) -> str:
        level, attrs, inner = match.group(1), match.group(2) or "", match.group(3)
        text = html_lib.unescape(_TAGS.sub("", inner)).replace("¶", "").strip()
        if not text:
            return match.group(0)
        found = _ID.search(attrs)
        ident = found.group(1) if found else "sec-" + re.sub(r"[^a-z0-9]+", "-", text.lower())
        while ident in used:
            ident += "-x"
        used.add(ident)
        if level == "2":
            titles.append(text)
        items.append(
            f'<li class="level-{level}"><a href="#{ident}">{html_lib.escape(text)}</a></li>'
        )
        attrs = attrs if found else f'{attrs} id="{ident}"'
        return f"<h{level}{attrs}>{inner}</h{level}>"

    body = _HEADING.sub(anchor, body)
    return body, f"<ol>{''.join(items)}</ol>", tuple(titles)


def notebook_to_html(nb: Any, meta: ReportMeta, *, toc_levels: int = 2) -> HtmlResult:
    """Export an executed notebook to print HTML (no code, title page, table of contents).

    Parameters
    ----------
    nb
        An ``nbformat`` notebook node (not modified).
    meta
        Title page and header/footer content.
    toc_levels
        2 lists the ``##`` sections, 3 adds ``###`` subsections.
    """
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    if meta.page_size not in PAGE_SIZES:
        msg = f"unknown page size {meta.page_size!r}"
        raise ReportError(msg, hint=f"use one of {list(PAGE_SIZES)}.")
    nb = copy.deepcopy(nb)
    stderr = _strip_stderr(nb)
    config = Config()
    config.TagRemovePreprocessor.remove_cell_tags = REMOVE_TAGS
    config.TagRemovePreprocessor.enabled = True
    exporter = HTMLExporter(
        config=config,
        template_name="obsbench",
        extra_template_basedirs=[str(templates_dir())],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        exclude_anchor_links=True,
    )
    body, _ = exporter.from_notebook_node(
        nb, resources={"report_css": print_css(), "obsbench": meta.__dict__}
    )
    main_at = body.find('<main class="report-body">')
    main, toc, sections = _toc(body[main_at:])
    body = body[:main_at] + main
    if toc_levels < 3:
        toc = re.sub(r'<li class="level-3">.*?</li>', "", toc)
    return HtmlResult(body.replace(TOC_MARKER, toc, 1), tuple(stderr), sections)


def html_to_pdf(html: str, pdf_path: Path, *, base_url: str | None = None) -> int:
    """Render ``html`` to ``pdf_path`` with WeasyPrint in this process; returns the page count."""
    from weasyprint import HTML

    document = HTML(string=html, base_url=base_url or str(pdf_path.parent)).render()
    document.write_pdf(pdf_path)
    return len(document.pages)


def html_file_to_pdf_isolated(html_path: Path, pdf_path: Path, *, timeout_s: float = 600) -> int:
    """Render in a child process, so WeasyPrint's memory goes back to the OS afterwards.

    Long table-heavy reports keep the whole laid-out document in memory (hundreds of MB);
    a long-lived scheduler should render them this way.
    """
    cmd = [sys.executable, "-m", "obsbench.reports.render", str(html_path), str(pdf_path)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        msg = f"PDF rendering of {html_path.name} took longer than {timeout_s:.0f} s"
        raise ReportError(msg, hint="split the report or attach long tables as CSV.") from None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        msg = f"PDF rendering of {html_path.name} failed: {tail[0]}"
        raise ReportError(msg, hint="run `python -m obsbench.reports.render HTML PDF` to debug.")
    return int(done.stdout.strip().splitlines()[-1])


def _main(argv: list[str]) -> int:  # pragma: no cover - exercised through a subprocess
    html_path, pdf_path = Path(argv[0]), Path(argv[1])
    pages = html_to_pdf(html_path.read_text(encoding="utf-8"), pdf_path)
    print(pages)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main(sys.argv[1:]))
