"""`xata2convex` command line: wires options to the same jobs the Lambda handlers run."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from . import jobs
from .changes import ChangeRow
from .config import Config, scrub
from .errors import explain, secrets_of
from .lock import LockBusy
from .mirror_config import CONFIG_FILE, load_mirror_config
from .model import SnapshotError, XataToConvexError
from .progress import LogProgress, NoProgress, ProgressDisplay, TerminalProgress
from .schemagen import write_convex_module
from .sync import SyncOptions, diff_snapshots

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("xata2convex")


def with_options(*options: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator for a list of click options, in the order they are listed in --help."""

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


def config_options(*names: str) -> Callable[[F], F]:
    """The flags of the Config fields a command uses, in Config's order; each shows its variable.

    A flag overrides the environment; Config.from_env reads the environment, so the variable named in
    the help is only shown here, not read by click."""
    options = []
    for f in fields(Config):
        if f.name not in names:
            continue
        default = f" [default: {f.default}]" if f.default is not None else ""
        kind = type(f.default) if type(f.default) in (int, float) else str
        options.append(
            click.option(f.metadata["flag"], f.name, type=kind, help=f"{f.metadata['help']}{default} "
                         f"[env: {f.metadata['env']}]")
        )  # fmt: skip
    return with_options(*options)


# Which settings each stage reads. The snapshot folder is named after the source's database and
# branch, so every command that reads snapshots takes the two settings that can name them.
SOURCE = (
    "xata_postgres_url",
    "xata_api_key",
    "xata_database_url",
    "xata_endpoint_url",
    "requests_per_second",
)
STORE = ("xata_postgres_url", "xata_database_url", "snapshot_uri")
CONVEX = ("convex_url", "convex_deploy_key", "convex_site_url", "sink_secret")
EXPORT = (*SOURCE, "snapshot_uri", "concurrency")


def root_meta() -> dict[str, Any]:
    """What the error layer needs to know about the running command (--json, -v, its Config)."""
    return click.get_current_context().find_root().meta


def remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.find_root().meta["as_json"] = ctx.find_root().meta.get("as_json", False) or value
    return value


def json_option(func: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, callback=remember_json, help="print one JSON object"
    )(func)


def set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value:
        return
    ctx.find_root().meta["verbose"] = True
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("xata2convex: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    # Taken off when the command ends: an in-process caller (a test, a Lambda's Powertools Logger
    # on the same "xata2convex" logger) must not inherit a handler bound to this command's stderr.
    def detach() -> None:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)

    ctx.call_on_close(detach)


verbose_option = click.option(
    "-v", "--verbose", is_flag=True, expose_value=False, is_eager=True, callback=set_verbose,
    help="log retries and progress to stderr; show the traceback of an unexpected error",
)  # fmt: skip


def build_config(kwargs: dict[str, Any]) -> Config:
    """The environment's settings, overridden by the command's flags (one per Config field it uses)."""
    config = Config.from_env().with_overrides(**{f.name: kwargs.pop(f.name, None) for f in fields(Config)})
    root_meta()["config"] = config
    return config


def report_error(meta: dict[str, Any], exc: Exception) -> NoReturn:
    """Every failure leaves here: one line `error: …` on stderr (and `{"error": …}` on stdout with
    --json), exit 1 (3 when another run holds the run lock). An unexpected error also says so; its
    traceback shows under -v."""
    message = explain(exc, meta.get("config"))
    if message is None:
        if meta.get("verbose"):
            traceback.print_exc()
        message = scrub(f"unexpected {type(exc).__name__}: {exc}", secrets_of(meta.get("config")))
        message = " ".join(message.split()) + (
            "" if meta.get("verbose") else " (a bug: rerun with -v for the traceback)"
        )
    if meta.get("as_json"):
        click.echo(json.dumps({"error": message}, ensure_ascii=False))
    click.echo(f"error: {message}", err=True)
    sys.exit(3 if isinstance(exc, LockBusy) else 1)


class Cli(click.Group):
    """The command group with one error layer: usage errors and failures print one `error:` line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.UsageError):
            raise
        except click.ClickException as exc:
            report_error(ctx.meta, XataToConvexError(exc.format_message()))
        except Exception as exc:  # the one place every error is turned into a line
            report_error(ctx.meta, exc)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(1)
        except click.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


@contextmanager
def shown_progress(as_json: bool) -> Iterator[ProgressDisplay]:
    """Progress on a terminal's stderr; as log lines under -v; else (and never with --json) none."""
    progress: ProgressDisplay = NoProgress()
    if not as_json and sys.stderr.isatty():
        progress = TerminalProgress(sys.stderr)
    elif root_meta().get("verbose"):
        progress = LogProgress(every_s=10)
    try:
        yield progress
    finally:
        progress.close()


def emit(as_json: bool, value: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(value, ensure_ascii=False) if as_json else text)


@click.group(cls=Cli)
@click.version_option(package_name="xata2convex", message="%(prog)s %(version)s")
@verbose_option
def main() -> None:
    """Keep Convex tables equal to a Xata database through CSV snapshots."""


@main.command()
@config_options(*EXPORT)
@verbose_option
@json_option
def export(as_json: bool, **kwargs: Any) -> None:
    """Write a snapshot of every Xata table; print its id."""
    with shown_progress(as_json) as progress:
        manifest = jobs.run_export(build_config(kwargs), progress)
    emit(as_json, manifest.to_json(), manifest.snapshot_id)


sync_options = with_options(
        click.option("--full", is_flag=True, help="reload every record and delete mirrored ones not in Xata"),
        click.option("--dry-run", is_flag=True, help="print the diff; write nothing"),
        click.option("--allow-mass-delete", is_flag=True, help="apply deletes over the guard's share"),
        click.option("--max-delete-share", type=float, default=0.5, show_default=True,
                     help="mass-delete guard: largest share of a table's rows one run may delete"),
)  # fmt: skip


def build_sync_options(kwargs: dict[str, Any], snapshot_id: str | None = None) -> SyncOptions:
    return SyncOptions(
        snapshot_id=snapshot_id,
        full=kwargs.pop("full"),
        dry_run=kwargs.pop("dry_run"),
        allow_mass_delete=kwargs.pop("allow_mass_delete"),
        max_delete_share=kwargs.pop("max_delete_share"),
        trigger="cli",
    )


def counts_text(table: dict[str, Any]) -> str:
    return (
        f"+{table['added']} added, ~{table['changed']} changed, -{table['deleted']} deleted, "
        f"{table['unchanged']} unchanged"
    )


def render_report(report: dict[str, Any]) -> str:
    lines = [f"run {report['runId']}: snapshot {report['snapshotId']} {report['status']}"]
    if report.get("dryRun"):
        lines[0] += " (dry run: nothing written)"
    for name, t in report["tables"].items():
        lines.append(f"  {name}: {counts_text(t)} [{t['status']}]")
        lines += [f"    {t['message']}"] if t.get("message") else []
        if t.get("errors"):
            lines.append(f"    {t['rejected']} record(s) not mirrored, e.g. {t['errors'][0]}")
        for unfit in t.get("notExported", []):
            lines.append(
                f"    record {unfit['id']!r} field {unfit['field']!r} not exported: {unfit['reason']}; "
                "its Convex document is kept until the value is fixed in Xata"
            )
    lines += [f"  schema drift: {d}" for d in report.get("drift", [])]
    return "\n".join(lines)


def finish_sync(as_json: bool, report: dict[str, Any]) -> None:
    """Print the report; exit 0 when every table applied cleanly, 2 when some table or record did not."""
    emit(as_json, report, render_report(report))
    sys.exit(0 if report["status"] == "succeeded" else 2)


@main.command()
@click.option("--snapshot", "snapshot_id", help="apply this snapshot (default: the newest)")
@sync_options
@config_options(*STORE, *CONVEX)
@verbose_option
@json_option
def sync(snapshot_id: str | None, as_json: bool, **kwargs: Any) -> None:
    """Apply the difference between the newest snapshot and the last applied one to Convex."""
    options = build_sync_options(kwargs, snapshot_id)
    with shown_progress(as_json) as progress:
        report = jobs.run_sync(build_config(kwargs), options, display=progress)
    finish_sync(as_json, report)


@main.command()
@sync_options
@config_options(*EXPORT, *CONVEX)
@verbose_option
@json_option
def run(as_json: bool, **kwargs: Any) -> None:
    """Export a fresh snapshot, then sync it."""
    options = build_sync_options(kwargs)
    with shown_progress(as_json) as progress:
        report = jobs.run_export_and_sync(build_config(kwargs), options, display=progress)
    finish_sync(as_json, report)


@main.command()
@config_options(*STORE, *CONVEX)
@verbose_option
@json_option
def verify(as_json: bool, **kwargs: Any) -> None:
    """Exit 0 only when the Convex mirror equals the last applied snapshot."""
    result = jobs.verify(build_config(kwargs))
    lines = [f"snapshot {result['snapshotId']}: " + ("Convex equals it" if result["equal"] else "DIFFERENT")]
    for name, t in result["tables"].items():
        if "error" in t:  # the snapshot's file is damaged: nothing to compare
            lines.append(f"  {name}: NOT CHECKED: {t['error']}")
            continue
        lines.append(
            f"  {name}: {t['actual']}/{t['expected']} documents, {t['missing']} missing, "
            f"{t['rejected']} cannot be mirrored, {t['extra']} extra, {t['different']} different"
        )
        lines += [f"    {e}" for e in t["examples"]]
    emit(as_json, result, "\n".join(lines))
    sys.exit(0 if result["equal"] else 1)


@main.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("convex/xataTables.ts"),
    show_default=True,
)
@click.option("--snapshot", "snapshot_id", help="read the Xata schema from this snapshot, not from Xata")
@click.option(
    "--config",
    "mirror_config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"the mirror's settings (default: ./{CONFIG_FILE} when it exists)",
)
@config_options(*SOURCE, "snapshot_uri")
@verbose_option
def schema(out: Path, snapshot_id: str | None, mirror_config_file: Path | None, **kwargs: Any) -> None:
    """Generate typed Convex table definitions from the Xata schema and xata2convex.toml."""
    mirror_config = load_mirror_config(mirror_config_file)
    config = build_config(kwargs)
    if snapshot_id:
        database_schema = jobs.open_store(config).read_schema(snapshot_id)
    else:
        source = jobs.open_source(config)
        try:
            database_schema = source.read_schema()
        finally:
            source.close()
    changed = write_convex_module(database_schema, out, mirror_config)
    click.echo(
        f"{'wrote' if changed else 'unchanged'} {out} (Xata schema {database_schema.fingerprint()[:12]})"
    )


@main.group()
def snapshots() -> None:
    """Browse snapshots for audit."""


@snapshots.command("ls")
@config_options(*STORE)
@verbose_option
@json_option
def snapshots_ls(as_json: bool, **kwargs: Any) -> None:
    """List complete snapshots, oldest first, with table and row counts, the run that wrote each, and
    the one applied to Convex in full (marked `applied`)."""
    store = jobs.open_store(build_config(kwargs))
    state, _ = store.read_state()
    applied = state.snapshot_id if state else None
    rows = []
    for snapshot_id in store.list_snapshots():
        manifest = store.read_manifest(snapshot_id)
        rows.append(
            {
                "snapshotId": snapshot_id,
                "createdAt": manifest.created_at,
                "runId": manifest.run_id,
                "applied": snapshot_id == applied,
                "tables": len(manifest.tables),
                "rows": sum(t.rows for t in manifest.tables),
            }
        )
    text = "\n".join(
        f"{r['snapshotId']}  {r['createdAt']}  {r['tables']} tables  {r['rows']} rows"
        f"  run {r['runId'] or '-'}" + ("  applied" if r["applied"] else "")
        for r in rows
    )
    emit(as_json, {"snapshots": rows, "appliedSnapshotId": applied}, text or "no snapshots")


@snapshots.command("show")
@click.argument("snapshot_id")
@click.argument("table", required=False)
@config_options(*STORE)
@verbose_option
@json_option
def snapshots_show(snapshot_id: str, table: str | None, as_json: bool, **kwargs: Any) -> None:
    """Show a snapshot's manifest, or print one table's CSV (which has no --json form)."""
    if table is not None and as_json:
        raise click.ClickException(
            "a table's CSV has no JSON form: drop --json to print the CSV, or drop TABLE for the manifest"
        )
    store = jobs.open_store(build_config(kwargs))
    manifest = store.read_manifest(snapshot_id)
    if table is None:
        lines = [f"{manifest.snapshot_id}  {manifest.source}  {manifest.database}:{manifest.branch}"]
        lines += [
            f"  {t.name}: {t.rows} rows, {len(t.columns)} columns, sha256 {t.sha256}" for t in manifest.tables
        ]
        lines += [f"  warning: {w}" for w in manifest.warnings]
        emit(as_json, manifest.to_json(), "\n".join(lines))
        return
    if table not in {t.name for t in manifest.tables}:
        raise click.ClickException(f"snapshot {snapshot_id} has no table {table!r}")
    for chunk in store.iter_text(snapshot_id, table, 1 << 16, expected=manifest.table(table)):
        sys.stdout.write(chunk)  # a file that does not match its manifest ends in an error


def change_line(row: ChangeRow) -> str:
    fields = f": {', '.join(row.fields)}" if row.change == "changed" else ""
    return f"    {row.change} {row.record_id}{fields}"


@snapshots.command("diff")
@click.argument("old_id")
@click.argument("new_id")
@click.option("--records", is_flag=True, help="list every record that differs: id, kind, changed fields")
@click.option("--table", "only", help="only this Xata table")
@config_options(*STORE)
@verbose_option
@json_option
def snapshots_diff(
    old_id: str, new_id: str, records: bool, only: str | None, as_json: bool, **kwargs: Any
) -> None:
    """Per-table adds, changes and deletes between two snapshots (nothing is written)."""
    found: dict[str, list[ChangeRow]] = {}

    def keep(table: str, row: ChangeRow) -> None:
        if only is None or table == only:
            found.setdefault(table, []).append(row)

    store = jobs.open_store(build_config(kwargs))
    tables = diff_snapshots(store, old_id, new_id, keep if records else None)
    if only is not None:
        if only not in tables:
            raise SnapshotError(f"neither snapshot has a table {only!r}")
        tables = {only: tables[only]}
    lines = [f"{old_id} -> {new_id}"]
    for name, t in tables.items():
        lines.append(f"  {name}: {counts_text(t)}")
        if records:
            t["records"] = [{"id": r.record_id, "change": r.change, "fields": list(r.fields)}
                            for r in found.get(name, [])]  # fmt: skip
            lines += map(change_line, found.get(name, []))
    emit(as_json, {"from": old_id, "to": new_id, "tables": tables}, "\n".join(lines))


@main.group()
def runs() -> None:
    """Browse run reports and the record-level changes of each run."""


@runs.command("ls")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="newest N runs")
@config_options(*STORE)
@verbose_option
@json_option
def runs_ls(limit: int, as_json: bool, **kwargs: Any) -> None:
    """List runs, newest first: id, status, trigger and counts."""
    store = jobs.open_store(build_config(kwargs))
    rows = []
    for run_id in store.list_runs()[:limit]:
        report = store.read_run_report(run_id) or {}
        rows.append(
            {
                "runId": run_id,
                "status": report.get("status"),
                "trigger": report.get("trigger"),
                "snapshotId": report.get("snapshotId"),
                "startedAt": report.get("startedAt"),
                **jobs.run_totals(report),
            }
        )
    text = "\n".join(
        f"{r['runId']}  {r['status']}  {r['trigger'] or '-'}  snapshot {r['snapshotId'] or '-'}  "
        f"+{r['added']} ~{r['changed']} -{r['deleted']}"
        for r in rows
    )
    emit(as_json, {"runs": rows}, text or "no runs")


@runs.command("show")
@click.argument("run_id")
@click.option("--table", help="print this table's record-level changes from the run's change file")
@config_options(*STORE)
@verbose_option
@json_option
def runs_show(run_id: str, table: str | None, as_json: bool, **kwargs: Any) -> None:
    """Show a run report, or the records one table's change file lists."""
    store = jobs.open_store(build_config(kwargs))
    report = store.read_run_report(run_id)
    if report is None:
        raise SnapshotError(f"no run report {run_id!r} at {store.describe(store.run_key(run_id))}")
    if table is None:
        lines = [render_report(report)] if "tables" in report else [f"run {run_id}: {report['status']}"]
        lines += [f"  error: {report['error']}"] if report.get("error") else []
        lines += (
            [f"  report: {store.describe(report['htmlReportKey'])}"] if report.get("htmlReportKey") else []
        )
        emit(as_json, report, "\n".join(lines))
        return
    if table not in report.get("tables", {}):
        raise SnapshotError(f"run {run_id} has no table {table!r}")
    changes = []
    if report["tables"][table].get("changesKey"):
        changes = list(store.read_change_file(store.change_key(run_id, table)))
    if as_json:
        emit(True, {"runId": run_id, "table": table, "changes": [c.to_json() for c in changes]}, "")
        return
    lines = [f"run {run_id} table {table}: {len(changes)} record change(s)"]
    for row in changes:
        lines.append(change_line(row))
        if row.change == "changed" and row.before is not None and row.after is not None:
            lines += [f"      {f}: {json_text(row.before.get(f))} -> {json_text(row.after.get(f))}"
                      for f in row.fields]  # fmt: skip
    click.echo("\n".join(lines))


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@main.command()
@click.option("--from_workspace", "workspace", required=True)
@click.option("--from_database", "database", required=True)
@click.option("--from_branch", "branch", default="main", show_default=True)
@click.option("--from_region", "region", default="us-east-1", show_default=True)
@click.option("--from_XATA_API_KEY", "xata_api_key", envvar="XATA_API_KEY", required=True)
@click.option("--output", type=click.Choice(["file"]), default="file", show_default=True)
@click.option("--output_path", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--output_format", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
def xreplay(
    workspace: str, database: str, branch: str, region: str, xata_api_key: str, output: str,
    output_path: Path, output_format: str,
) -> None:  # fmt: skip
    """xata_tools' xreplay file export (same flags): schema.json and one file per table."""
    from .xreplay import replay_to_files

    # Always the xata SDK, whatever XATA_POSTGRES_URL says: these flags name a REST database.
    config = replace(
        Config.from_env().with_overrides(
            xata_api_key=xata_api_key,
            xata_database_url=f"https://{workspace}.{region}.xata.sh/db/{database}:{branch}",
        ),
        xata_postgres_url=None,
    )
    for line in replay_to_files(jobs.open_source(config), output_path, output_format):
        click.echo(line)


class _LocalGroup(click.Group):
    """Its commands come from the development package xata2convex_local (never in the Lambda layer)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if not self.commands:
            raise click.ClickException(
                "`xata2convex local` needs the development package xata2convex-local: "
                "run `make setup`, or `pip install -e ./dev` in the repository"
            )
        return super().get_command(ctx, cmd_name)


@main.group(cls=_LocalGroup)
def local() -> None:
    """Local stand-ins for Xata and Convex (foreground)."""


def _register_local_commands() -> None:
    try:
        from xata2convex_local.commands import COMMANDS
    except ModuleNotFoundError as exc:
        if exc.name != "xata2convex_local":
            raise
        return
    for name, command in COMMANDS.items():
        local.add_command(command, name)


_register_local_commands()
