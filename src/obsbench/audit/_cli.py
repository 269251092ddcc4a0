"""``obsbench audit ...`` (registered by :mod:`obsbench.cli`).

Thin shells over :mod:`obsbench.audit`: parse options, call the library, print with rich.
``verify`` exits 1 when the chain is broken (2 for any other obsbench error).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from obsbench.audit._cli_base import _friendly_errors, console, err_console

audit_app = typer.Typer(
    help="Tamper-evident audit trail: verify, search, ingest, export/prune, compliance.",
    no_args_is_help=True,
)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (default: OBSBENCH_DATABASE_URL or SQLite)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        msg = f"{text!r} is not an ISO date or datetime"
        raise typer.BadParameter(msg) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        msg = f"{text!r} is not SEQ:HASH (a sequence number and a 64-hex-digit hash)"
        raise typer.BadParameter(msg)
    return int(seq), digest.lower()


def _anchors_from_manifest(path: Path) -> list[tuple[int, str]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    anchor = doc.get("audit_anchor") or doc
    return [(int(anchor["seq"]), str(anchor["hash"]))]


@audit_app.command("verify")
@_friendly_errors
def verify_cmd(
    url: UrlOption = None,
    anchor: Annotated[
        list[str] | None,
        typer.Option("--anchor", help="A known-good SEQ:HASH the chain must reproduce."),
    ] = None,
    manifest: Annotated[
        list[Path] | None,
        typer.Option("--manifest", help="A report manifest.json whose audit anchor to check."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-compute the hash chain; report the first altered, inserted or missing record."""
    from obsbench import audit

    anchors = [_anchor(a) for a in anchor or []]
    for path in manifest or []:
        anchors += _anchors_from_manifest(path)
    result = audit.verify(url=url, anchors=anchors)
    if as_json:
        console.print_json(json.dumps(result.as_dict() | {"elapsed_s": result.elapsed_s}))
    elif result.ok:
        console.print(f"[bold green]OK[/] {escape(str(result))} ({result.elapsed_s:.2f} s)")
    else:
        err_console.print(f"[bold red]BROKEN[/] {escape(str(result))}")
    if not result.ok:
        raise typer.Exit(code=1)


@audit_app.command("head")
@_friendly_errors
def head_cmd(url: UrlOption = None) -> None:
    """Print the chain head (last seq and its hash) without verifying."""
    from obsbench import audit

    h = audit.chain_head(url=url)
    console.print(f"{h.seq}:{h.hash}")


@audit_app.command("search")
@_friendly_errors
def search_cmd(
    actor: Annotated[str | None, typer.Option(help="Exact actor.")] = None,
    action: Annotated[str | None, typer.Option(help="Exact action.")] = None,
    resource: Annotated[str | None, typer.Option(help="Exact resource.")] = None,
    correlation_id: Annotated[str | None, typer.Option(help="Correlation id.")] = None,
    start: Annotated[str | None, typer.Option(help="From (ISO, UTC if no zone).")] = None,
    end: Annotated[str | None, typer.Option(help="Before (ISO, UTC if no zone).")] = None,
    text: Annotated[str | None, typer.Option(help="Substring of actor/resource/details.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Page size.")] = 50,
    page: Annotated[int, typer.Option(min=0, help="Page number (0-based).")] = 0,
    newest_first: Annotated[bool, typer.Option(help="Newest events first.")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search the audit trail (masked values only)."""
    from obsbench import audit

    frame = audit.search(
        actor=actor,
        action=action,
        resource=resource,
        correlation_id=correlation_id,
        start=_when(start),
        end=_when(end),
        text=text,
        limit=limit,
        offset=page * limit,
        descending=newest_first,
        url=url,
    )
    if as_json:
        console.print(frame.write_json(), soft_wrap=True, markup=False, highlight=False)
        return
    table = Table(title=f"audit events (page {page}, {frame.height} shown)")
    for col in ("seq", "ts", "actor", "action", "resource", "correlation_id", "details"):
        table.add_column(col, overflow="fold")
    for row in frame.iter_rows(named=True):
        table.add_row(
            str(row["seq"]),
            row["ts"].isoformat(timespec="seconds"),
            escape(row["actor"]),
            row["action"],
            escape(row["resource"]),
            escape(row["correlation_id"] or ""),
            escape(row["details"]),
        )
    console.print(table)


@audit_app.command("ingest")
@_friendly_errors
def ingest_cmd(
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Parquet, NDJSON or CSV with audit columns."),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Embedded store to read the 'audit' dataset from."),
    ] = None,
    sim_days: Annotated[
        int | None,
        typer.Option("--sim-days", min=1, help="Simulate this many days and ingest their audit."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Simulator seed (with --sim-days).")] = 7,
    url: UrlOption = None,
) -> None:
    """Append an audit stream: a file, the store's 'audit' dataset, or the simulator's."""
    import polars as pl

    from obsbench import audit

    if sum(x is not None for x in (file, sim_days)) > 1:
        msg = "give at most one of --file and --sim-days"
        raise typer.BadParameter(msg)
    if file is not None:
        suffix = file.suffix.lower()
        reader = {".parquet": pl.read_parquet, ".ndjson": pl.read_ndjson, ".jsonl": pl.read_ndjson}
        frame = reader.get(suffix, pl.read_csv)(file)
        if frame.schema.get("ts") == pl.String:
            frame = frame.with_columns(pl.col("ts").str.to_datetime(time_zone="UTC"))
    elif sim_days is not None:
        from obsbench.sim import SimConfig, simulate

        frame = simulate(SimConfig(seed=seed, days=sim_days))["audit"]
    else:
        from obsbench.store import Store

        frame = Store(home).read("audit")
    result = audit.record_many(frame.sort("ts", maintain_order=True), url=url)
    console.print(
        f"ingested {result.count:,} event(s): seq {result.first_seq}..{result.last_seq}, "
        f"head {result.head.hash}"
    )


@audit_app.command("export")
@_friendly_errors
def export_cmd(
    older_than_days: Annotated[int, typer.Option(min=0, help="Export events older than this.")],
    dest: Annotated[Path, typer.Option(help="Folder for the Parquet file and its manifest.")],
    prune_after: Annotated[
        bool,
        typer.Option("--prune", help="Then prune the exported events (needs DELETE rights)."),
    ] = False,
    url: UrlOption = None,
) -> None:
    """Export old events to Parquet with a checksum manifest, verified against the chain."""
    from obsbench.audit import open_store, retention

    store = open_store(url)
    manifest = retention.export(store, dest, older_than_days=older_than_days)
    if manifest is None:
        console.print(f"no events older than {older_than_days} day(s) to export")
        return
    store.record("system:retention", "export", manifest.name, retention.export_details(manifest))
    console.print(
        f"exported {manifest.rows:,} event(s) seq {manifest.first_seq}..{manifest.last_seq} "
        f"to {manifest.parquet} (sha256 {manifest.sha256[:16]}...), verified"
    )
    if prune_after:
        _prune(store, Path(manifest.parquet).with_suffix("").with_suffix(".manifest.json"))


@audit_app.command("prune")
@_friendly_errors
def prune_cmd(
    manifest: Annotated[Path, typer.Argument(help="The export's .manifest.json.")],
    url: UrlOption = None,
) -> None:
    """Delete the events of a verified export, keeping a checkpoint (privileged)."""
    from obsbench.audit import open_store

    _prune(open_store(url), manifest)


def _prune(store: object, manifest: Path) -> None:
    from obsbench.audit import retention
    from obsbench.audit.store import AuditStore

    assert isinstance(store, AuditStore)
    m = retention.ExportManifest.read(manifest)
    deleted = retention.prune(store, m)
    store.record("system:retention", "prune", m.name, retention.export_details(m))
    console.print(f"pruned {deleted:,} event(s) through seq {m.last_seq}; checkpoint kept")


@audit_app.command("replay-spool")
@_friendly_errors
def replay_cmd(url: UrlOption = None) -> None:
    """Write the events spooled while the database was down."""
    from obsbench import audit

    console.print(f"replayed {audit.replay_spool(url):,} spooled event(s)")


@audit_app.command("migrate")
@_friendly_errors
def migrate_cmd(url: UrlOption = None) -> None:
    """Create or upgrade the audit schema (needs DDL rights)."""
    from obsbench.audit import migrations
    from obsbench.audit.store import _make_engine
    from obsbench.config import get_settings

    engine = _make_engine(url or get_settings().database)
    applied = migrations.migrate(engine)
    console.print(f"applied migrations {applied}" if applied else "audit schema is up to date")


@audit_app.command("anchor")
@_friendly_errors
def anchor_cmd(
    manifest: Annotated[
        Path | None,
        typer.Option("--manifest", help="Also write the anchor into this report manifest.json."),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Verify the chain and print its head as an anchor (SEQ:HASH) to keep outside the database."""
    from obsbench import audit
    from obsbench.audit.compliance import write_anchor

    anchor = audit.anchor(url=url)
    if manifest is not None:
        write_anchor(manifest, anchor)
    console.print(f"{anchor['seq']}:{anchor['hash']}")
    if not anchor["verified"]:
        err_console.print("[bold red]the chain does not verify[/]: anchor is the last good record")
        raise typer.Exit(code=1)


@audit_app.command("compliance")
@_friendly_errors
def compliance_cmd(
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option(help="Last day (YYYY-MM-DD, inclusive).")],
    threshold_bps: Annotated[float, typer.Option(help="Best-execution slippage threshold.")] = 25.0,
    policy: Annotated[
        Path | None, typer.Option(help="Access policy YAML (roles, permissions).")
    ] = None,
    home: Annotated[Path | None, typer.Option("--home", help="Store with orders/fills.")] = None,
    url: UrlOption = None,
) -> None:
    """List the open compliance gaps of a period."""
    from datetime import timedelta

    from obsbench.audit import compliance
    from obsbench.store import Store

    lo, last = _when(start), _when(end)
    assert lo is not None
    assert last is not None
    hi = last + timedelta(days=1)
    events = compliance.load_events(lo, hi, url=url)
    store = Store(home)
    gaps = compliance.gaps(
        events,
        policy=compliance.AccessPolicy.from_yaml(policy) if policy else None,
        orders=store.read("orders", start=lo, end=hi),
        fills=store.read("fills", start=lo, end=hi),
        threshold_bps=threshold_bps,
    )
    table = Table(title=f"open compliance gaps {start}..{end}: {gaps.height}")
    for col in ("check", "severity", "seq", "ts", "resource", "evidence"):
        table.add_column(col, overflow="fold")
    for row in gaps.head(200).iter_rows(named=True):
        table.add_row(
            row["check"],
            row["severity"],
            str(row["seq"] or ""),
            row["ts"].isoformat(timespec="seconds") if row["ts"] else "",
            escape(row["resource"] or ""),
            escape(row["evidence"] or ""),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``obsbench audit`` to the main command."""
    app.add_typer(audit_app, name="audit")
