"""The ``scion`` command: run searches, watch them, and start the service's processes."""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from client import render
from client.sdk import ScionClient, ScionError
from client.spec_file import SpecFileError, read_spec
from scion import logs
from scion.settings import get_settings, is_loopback, mask_url

if TYPE_CHECKING:
    from client.stack import LocalStack

app = typer.Typer(help="Scion: distributed neural architecture search.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
bench_app = typer.Typer(help="Benchmarks of search quality and speed.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
token_app = typer.Typer(help="API tokens (an administrator's commands, run where SCION_DATABASE_URL reaches the "
                             "database).", no_args_is_help=True)
app.add_typer(token_app, name="token")

console = Console()
err_console = Console(stderr=True)

ApiOption = Annotated[str | None, typer.Option("--api", envvar="SCION_API_URL", help="A running Scion API.")]
# A flag (no value): metavar "" keeps the help from showing it as an option that takes a <bool>.
JsonOption = Annotated[bool, typer.Option("--json", metavar="", help="Print JSON instead of tables.")]
# What the production-path benchmarks run against: a table for tabular trials, a PostgreSQL server
# to create scratch databases on, and a Redis database they may empty.
BenchTableOption = Annotated[Path, typer.Option("--table", help="A NAS-Bench-201-format CSV for the tabular trials.")]
BenchDatabaseOption = Annotated[str, typer.Option(
    "--database-url", help="A PostgreSQL server the benchmark may create databases on.")]
BenchBrokerOption = Annotated[str, typer.Option("--broker", help="A Redis database the benchmark may empty.")]
BENCH_TABLE = Path("../shared/data/nb201_cifar10.csv")
BENCH_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BENCH_BROKER = "redis://127.0.0.1:6379/9"


def _logging() -> None:
    logs.configure()


def _load_spec(path: Path, as_json: bool) -> dict[str, Any]:
    """The spec in ``path``; a file that cannot be read ends the command with one line saying where
    (``file:line:column: ...``), as JSON with ``--json``."""
    try:
        return read_spec(path)
    except SpecFileError as exc:
        if as_json:
            render.print_json({"error": str(exc)})
        else:
            err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)  # one line, for editors
        raise typer.Exit(2) from None


class TerminalClient(ScionClient):
    """The SDK as the CLI uses it: every answer printable (``render.printable``), since names,
    errors and events are whatever a job's owner wrote or a candidate raised, and an admin lists
    every owner's jobs. Markup is escaped where text is printed."""

    def _decoded(self, body: Any) -> Any:
        return render.printable(body)


def _client(api: str | None) -> ScionClient:
    url = api or get_settings().api_url
    if not url:
        err_console.print("[red]no API to talk to:[/] pass --api URL or set SCION_API_URL")
        raise typer.Exit(2)
    return TerminalClient(url)


def _fail(exc: ScionError) -> None:
    label = f"error {exc.status_code}" if exc.status_code else "error"
    err_console.print(f"[red]{label}:[/] {escape(render.printable(exc.detail))}")
    raise typer.Exit(1)


def _table_width() -> int | None:
    """How wide a table may fold its architectures: the terminal's width; unbounded (whole) when
    the output is a file or a pipe."""
    return console.width if console.is_terminal else None


def _follow(client: ScionClient, job: dict[str, Any], as_json: bool,
            check: Callable[[], None] = lambda: None, json_lines: bool = False) -> dict[str, Any]:
    """Watch a job to its end, then print its leaderboard: a live bar in a terminal, otherwise one
    line per change (trial counts, best, phase, status); with ``json_lines`` the job as JSON, one line
    per change; with ``as_json`` only the final job, as JSON. ``check`` runs at every poll and may end
    the command (an embedded stack with a part gone)."""
    if as_json:
        final = client.wait(job["id"], on_update=lambda _: check())
        render.print_json(final)
        return final
    if console.is_terminal and not json_lines:
        with render.JobProgress(console, job) as bar:
            final = client.wait(job["id"], on_update=lambda snapshot: (check(), bar.update(snapshot)))
    else:
        shown: list[tuple[Any, ...]] = []  # the last change printed

        def on_update(snapshot: dict[str, Any]) -> None:
            check()
            if (key := render.progress_key(snapshot)) not in shown[-1:]:
                shown.append(key)
                if json_lines:
                    render.print_json_line(snapshot)
                else:
                    console.print(render.progress_line(snapshot), markup=False, highlight=False, soft_wrap=True)

        final = client.wait(job["id"], on_update=on_update)
        if json_lines:
            return final
    render.job_summary(console, final)
    top = client.trials(final["id"], sort="objective", limit=10)["items"]
    if top:
        render.print_table(console, render.trial_table(top, final["objective"]["metric"], title="leaderboard",
                                                       width=_table_width()))
    if final["best"]:
        render.best_trial(console, final["best"], final["objective"]["metric"])
    return final


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Job spec (YAML or JSON).")],
    api: ApiOption = None,
    as_json: JsonOption = False,
    workers: Annotated[int, typer.Option(help="Worker processes of the embedded stack.")] = 2,
) -> None:
    """Run a search to its end: on the server named by --api, else on an embedded stack."""
    body = _load_spec(spec, as_json)
    url = api or get_settings().api_url
    stack = None
    if not url:
        from client.stack import LocalStack

        stack = LocalStack(get_settings(), workers=workers)
        err_console.print(f"using the embedded stack at {stack.url} (database {mask_url(get_settings().db_url)}, "
                          f"{workers} workers, logs in {stack.logs})", markup=False, soft_wrap=True)
        err_console.print(auth_line(stack.host))
    else:
        err_console.print(f"using the API at {url}", markup=False, soft_wrap=True)

    def check() -> None:
        if stack and (why := stack.exited()):  # the job cannot finish without it: say so, not wait on
            err_console.print(f"[red]error:[/] {escape(why)}")
            raise typer.Exit(1)

    with _started(stack) if stack else nullcontext(), TerminalClient(stack.url if stack else url) as client:
        try:
            job = client.submit(body)
        except ScionError as exc:
            _fail(exc)
        final = _follow(client, job, as_json, check)
    raise typer.Exit(0 if final["status"] == "completed" else 1)


@contextmanager
def _started(stack: LocalStack) -> Iterator[LocalStack]:
    """The embedded stack, running until the block ends; a part that refuses to start is one
    error line (its reason) and exit status 1."""
    from client.stack import StackError

    try:
        stack.start()
    except StackError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    try:
        yield stack
    finally:
        stack.stop()


@app.command()
def submit(spec: Annotated[Path, typer.Argument(help="Job spec (YAML or JSON).")],
           api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Submit a job and print its id."""
    with _client(api) as client:
        try:
            job = client.submit(_load_spec(spec, as_json))
        except ScionError as exc:
            _fail(exc)
    render.print_json(job) if as_json else console.print(f"submitted job {job['id']} ({escape(job['name'])})")


@app.command()
def status(job_id: Annotated[int | None, typer.Argument(help="A job; all jobs when left out.")] = None,
           api: ApiOption = None, as_json: JsonOption = False) -> None:
    """A job's status, or a table of jobs."""
    with _client(api) as client:
        try:
            result = client.job(job_id) if job_id is not None else client.jobs(limit=100)
        except ScionError as exc:
            _fail(exc)
    if as_json:
        render.print_json(result)
    elif job_id is not None:
        render.job_summary(console, result)
        if result["best"]:
            render.best_trial(console, result["best"], result["objective"]["metric"])
    else:
        render.print_table(console, render.job_table(result["items"]))


@app.command()
def trials(
    job_id: int,
    api: ApiOption = None,
    as_json: JsonOption = False,
    sort: Annotated[str, typer.Option(help="'number' or 'objective' (best first).")] = "number",
    status_filter: Annotated[str | None, typer.Option("--status", help="Only trials in this status.")] = None,
    phase: Annotated[str | None, typer.Option(help="A one-shot job's phase: supernet, search or retrain.")] = None,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """A page of a job's trials."""
    with _client(api) as client:
        try:
            job = client.job(job_id)
            page = client.trials(job_id, sort=sort, status=status_filter, limit=limit, offset=offset, phase=phase)
        except ScionError as exc:
            _fail(exc)
    if as_json:
        render.print_json(page)
    else:
        render.print_table(console, render.trial_table(page["items"], job["objective"]["metric"],
                                                       title=f"job {job_id}: {page['total']} trials",
                                                       width=_table_width()))


@app.command("trial")
def show_trial(job_id: Annotated[int, typer.Argument(help="The job.")],
               number: Annotated[int, typer.Argument(help="The trial's number within the job.")],
               api: ApiOption = None, as_json: JsonOption = False) -> None:
    """One trial: architecture, status, attempts, metrics, queue wait, the whole error of a failed
    trial and its learning curve; --json prints the API's trial object."""
    with _client(api) as client:
        try:
            job, trial = client.job(job_id), client.trial(job_id, number)
        except ScionError as exc:
            _fail(exc)
    render.print_json(trial) if as_json else render.trial_detail(console, trial, job)


@app.command()
def events(job_id: int, api: ApiOption = None, as_json: JsonOption = False) -> None:
    """What happened to a job, oldest first: submitted, started, phases, trials lost or resent, its end."""
    with _client(api) as client:
        try:
            items = client.events(job_id)
        except ScionError as exc:
            _fail(exc)
    if as_json:
        render.print_json(items)
        return
    for event in items:
        console.print(render.event_line(event), markup=False, highlight=False, soft_wrap=True)
    if not items:
        console.print(f"job {job_id} has no events")


@app.command()
def best(job_id: int, api: ApiOption = None, as_json: JsonOption = False) -> None:
    """The best trial of a job so far."""
    with _client(api) as client:
        try:
            job, trial = client.job(job_id), client.best(job_id)
        except ScionError as exc:
            _fail(exc)
    render.print_json(trial) if as_json else render.best_trial(console, trial, job["objective"]["metric"])


@app.command()
def pareto(job_id: int, api: ApiOption = None, as_json: JsonOption = False) -> None:
    """The Pareto front of a job: its non-dominated trials over all its objectives."""
    with _client(api) as client:
        try:
            job, front = client.job(job_id), client.pareto(job_id)
        except ScionError as exc:
            _fail(exc)
    if as_json:
        render.print_json(front)
        return
    objectives = [f"{o['metric']} ({o['mode']})" for o in job["spec"]["objectives"]]
    render.print_table(console, render.trial_table(
        front, job["objective"]["metric"], objectives=tuple(o["metric"] for o in job["spec"]["objectives"]),
        title=f"job {job_id}: Pareto front, {len(front)} trials over {', '.join(objectives)}",
        width=_table_width(),
    ))


@app.command("export")
def export_model(
    job_id: Annotated[int, typer.Argument(help="The job.")],
    trial: Annotated[int | None, typer.Option("--trial", "-t", help="Trial number; default: the job's best.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx, torchscript or state_dict.")] = "onnx",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File (or directory) to write; default: "
                                                "scion-jobJ-trialN.<format suffix> here.")] = None,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Download a completed trial's trained network; a state_dict also gets FILE.json, the
    architecture to build the network it loads into. With no API given (--api, SCION_API_URL), from
    the embedded store that `scion run` used, exported in this process."""
    from client.stack import embedded_api, export_here

    settings = get_settings()
    url = api or settings.api_url
    if not url:
        err_console.print(f"no API given: reading the embedded store (database {mask_url(settings.db_url)}, "
                          f"artifacts in {settings.artifact_root})", markup=False, soft_wrap=True)
    with nullcontext(url) if url else embedded_api(settings) as base, TerminalClient(base) as client:
        try:
            number = trial if trial is not None else client.best(job_id)["number"]
            if not url and (reason := export_here(job_id, number, fmt)):
                raise ScionError(409, reason)
            path = client.download_model(job_id, number, fmt, output)
            sidecar = None
            if fmt == "state_dict":
                sidecar = path.with_suffix(".json")
                sidecar.write_text(json.dumps(client.architecture(job_id, number), indent=2))
        except ScionError as exc:
            _fail(exc)
    result = {"job_id": job_id, "trial": number, "format": fmt, "path": str(path), "bytes": path.stat().st_size,
              "architecture": str(sidecar) if sidecar else None}
    if as_json:
        render.print_json(result)
    else:
        extra = f" and its architecture to {escape(str(sidecar))}" if sidecar else ""
        console.print(f"wrote trial {number} of job {job_id} as {fmt} to {escape(str(path))} "
                      f"({result['bytes'] / 1024:,.0f} KiB){extra}")


@app.command()
def cancel(job_id: int, api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Cancel a job: queued trials are withdrawn, running ones stop within an epoch."""
    with _client(api) as client:
        try:
            job = client.cancel(job_id)
        except ScionError as exc:
            _fail(exc)
    render.print_json(job) if as_json else console.print(f"job {job_id} cancelled")


@app.command()
def watch(job_id: int, api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Follow a job to its end: a live bar in a terminal, otherwise a line per change (JSON lines,
    the job as GET /v1/jobs/{id} returns it, with --json); then its leaderboard."""
    with _client(api) as client:
        try:
            final = _follow(client, client.job(job_id), False, json_lines=as_json)
        except ScionError as exc:
            _fail(exc)
    raise typer.Exit(0 if final["status"] == "completed" else 1)


@app.command("api")
def api_server(host: str = "127.0.0.1", port: int = 8000,
               workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1) -> None:
    """Serve the REST API."""
    _preflight("api")
    import uvicorn

    # The listen address decides SCION_AUTH=auto; uvicorn's worker processes inherit it.
    os.environ["SCION_API_HOST"] = host
    get_settings.cache_clear()
    _logging()
    logging.getLogger("api").info(auth_line(host))
    from api.slow_clients import uvicorn_options

    uvicorn.run("api.main:app", host=host, port=port, workers=workers, log_config=logs.config(), **uvicorn_options())


def auth_line(host: str) -> str:
    """One line saying whether the API at ``host`` asks for tokens, and why."""
    settings = get_settings().model_copy(update={"api_host": host})
    where = "loopback only" if is_loopback(host) else "not loopback"
    if settings.auth_enabled:
        return f"API auth on (SCION_AUTH={settings.auth}, listening on {host}: {where}): requests need a token"
    warning = "" if is_loopback(host) else " WARNING: anyone who reaches this address can use it"
    return (f"API auth off (SCION_AUTH={settings.auth}, listening on {host}: {where}): open, no tokens"
            f"{warning}")


def _preflight(process: str) -> None:
    """End the command with one line when this process cannot work as configured (storage/preflight.py)."""
    from storage.preflight import Misconfigured, check

    try:
        check(process)
    except Misconfigured as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@app.command()
def scheduler() -> None:
    """Run the scheduler: claims jobs, runs their strategies, dispatches trials."""
    _preflight("scheduler")
    from scheduler.loop import Scheduler

    _logging()
    Scheduler().run(_stop_on_signals())


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues: gpu (training), cpu (look-ups). Every "
                                          "worker also serves export (model downloads).")] = "gpu,cpu",
    concurrency: Annotated[int | None, typer.Option(help="Processes; default one per GPU, else 1.")] = None,
    cpu_concurrency: Annotated[int | None, typer.Option(
        help="Processes for the cheap queues (cpu, export), which run on a Celery worker of their own when this "
             "one serves gpu too; default: as many as --concurrency.")] = None,
    name: Annotated[str | None, typer.Option(
        help="Prefix of the Celery node names (<name>-<role>-<pid>@<host>; default <role>-<pid>@<host>).")] = None,
) -> None:
    """Run the Celery workers that evaluate trials (one process per GPU) and export trained networks."""
    _preflight("worker")  # before it consumes a message
    import torch

    from worker import consumers

    if name is not None and ("@" in name or not name.strip()):
        err_console.print(f"[red]error:[/] --name {escape(repr(name))}: a non-empty prefix without '@'")
        raise typer.Exit(2)
    n = concurrency or max(1, torch.cuda.device_count())
    plan = consumers.plan([q for q in (part.strip() for part in queues.split(",")) if q], concurrency=n,
                          cheap_concurrency=cpu_concurrency or n, split=get_settings().worker_split_queues)
    if len(plan) == 1:
        consumers.run(plan[0], name)
    else:
        raise typer.Exit(consumers.supervise(plan, name))


@app.command()
def up(port: int = 8000, host: str = "127.0.0.1",
       workers: Annotated[int, typer.Option(help="Worker processes.")] = 2) -> None:
    """Start API, scheduler and workers together on this machine, until Ctrl-C."""
    from client.stack import LocalStack

    stack = LocalStack(get_settings(), workers=workers, port=port, host=host)
    with _started(stack):
        console.print(f"Scion is up: API {stack.url} (docs {stack.url}/docs), logs in {stack.logs}")
        console.print(auth_line(host))
        stack.wait(_stop_on_signals())


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema (Alembic) at SCION_DATABASE_URL."""
    from storage.migrate import upgrade

    _logging()
    upgrade(get_settings().db_url, revision)
    console.print(f"database at {escape(mask_url(get_settings().db_url))} is at revision {revision}")


def _token_session():
    from storage.db import session_scope

    return session_scope(get_settings().db_url)


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _token_db_error(exc: Exception) -> None:
    reason = _first_line(exc)
    hint = " (is the schema current? run `scion db upgrade`)" if "tokens" in reason else ""
    err_console.print(f"[red]error:[/] cannot use the tokens table at {escape(mask_url(get_settings().db_url))}: "
                      f"{escape(reason)}{hint}")
    raise typer.Exit(1)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="A unique name for the token (it is what listings and logs show).")],
    owner: Annotated[str | None, typer.Option(help="Whose jobs it submits and sees (default: the name).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May see and cancel every owner's jobs.")] = False,
) -> None:
    """Issue a token and print it once: it is stored hashed and cannot be shown again."""
    from sqlalchemy.exc import SQLAlchemyError

    import scion.errors
    from storage.tokens import create_token

    try:
        with _token_session() as session:
            secret = create_token(session, name=name, owner=owner, is_admin=admin)
    except scion.errors.ScionError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        _token_db_error(exc)
    who = owner or name
    err_console.print(f"token {escape(name)!r} for owner {escape(who)!r}{' (admin)' if admin else ''}; "
                      "copy it now, it is not shown again (clients read SCION_TOKEN or SCION_TOKEN_FILE):")
    typer.echo(secret)  # alone on stdout, for TOKEN=$(scion token create ...)


@token_app.command("list")
def token_list(as_json: JsonOption = False) -> None:
    """The tokens by name (never their secrets)."""
    from rich.table import Table
    from sqlalchemy.exc import SQLAlchemyError

    from storage.tokens import list_tokens

    try:
        with _token_session() as session:
            rows = [{"name": t.name, "owner": t.owner, "admin": t.is_admin,
                     "created_at": t.created_at.isoformat(),
                     "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                     "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None} for t in list_tokens(session)]
    except SQLAlchemyError as exc:
        _token_db_error(exc)
    if as_json:
        render.print_json(rows)
        return
    table = Table(title=f"{len(rows)} tokens")
    for column in ("name", "owner", "admin", "created", "last used", "revoked"):
        table.add_column(column)
    for r in rows:
        table.add_row(escape(r["name"]), escape(r["owner"]), "yes" if r["admin"] else "",
                      r["created_at"][:19], (r["last_used_at"] or "never")[:19], (r["revoked_at"] or "")[:19])
    console.print(table)


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token: requests carrying it get 401 from now on."""
    from sqlalchemy.exc import SQLAlchemyError

    import scion.errors
    from storage.tokens import revoke_token

    try:
        with _token_session() as session:
            revoke_token(session, name=name)
    except scion.errors.ScionError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        _token_db_error(exc)
    console.print(f"token {escape(name)!r} revoked")


@bench_app.command("dispatch")
def bench_dispatch(
    table: BenchTableOption = BENCH_TABLE,
    database_url: BenchDatabaseOption = BENCH_DATABASE,
    broker: BenchBrokerOption = BENCH_BROKER,
    trials: int = 2000,
    workers: Annotated[int, typer.Option(help="Worker processes (Scion), processes (Optuna, Celery).")] = 2,
    parallel: Annotated[int, typer.Option(help="Scion's max_parallel.")] = 16,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Trials per second through the production path, against Optuna (RDB) and plain Celery."""
    import json

    from rich.table import Table

    from bench import dispatch

    report = dispatch.run(database_url=database_url, broker=broker, table=table, trials=trials, workers=workers,
                          parallel=parallel)
    table_out = Table(title=f"dispatch: {trials} trials, {workers} processes")
    for column in ("system", "trials/s", "wall s", "notes"):
        table_out.add_column(column)
    for key, name in (("scion", "Scion (HTTP, scheduler, Celery/Redis, PostgreSQL)"),
                      ("scion_one_per_message", "Scion, one trial per message")):
        s = report[key]
        table_out.add_row(name, f"{s['trials_per_s']:.1f}", f"{s['wall_s']}",
                          f"first trial running {s['first_trial_running_s']} s; worker gap median "
                          f"{s['worker_gap_ms_median']} ms, p99 {s['worker_gap_ms_p99']} ms; "
                          f"{s['trials_per_message']} trials per message, gap between messages median "
                          f"{s['message_gap_ms_median']} ms, p99 {s['message_gap_ms_p99']} ms")
    table_out.add_row("Optuna (RDB on PostgreSQL, random sampler)", f"{report['optuna']['trials_per_s']:.1f}",
                      f"{report['optuna']['wall_s']}", "")
    table_out.add_row("plain Celery (no-op task, same broker)", f"{report['celery']['trials_per_s']:.1f}",
                      f"{report['celery']['wall_s']}", "floor")
    console.print(table_out)
    console.print(f"Scion / Optuna = {report['vs_optuna']}x; Scion / Celery floor = {report['vs_celery_floor']} "
                  f"({report['vs_celery_floor_one_per_message']} with one trial per message)")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {json_out}")


def _counts(text: str, option: str, example: str) -> tuple[int, ...]:
    """A comma-separated list of whole numbers from a bench option, or a usage error naming it."""
    try:
        return tuple(int(n) for n in text.split(",") if n.strip())
    except ValueError:
        raise typer.BadParameter(f"expected counts like {example}, got {text!r}", param_hint=option) from None


@bench_app.command("scheduler")
def bench_scheduler(
    table: BenchTableOption = BENCH_TABLE,
    database_url: BenchDatabaseOption = BENCH_DATABASE,
    broker: BenchBrokerOption = BENCH_BROKER,
    sizes: Annotated[str, typer.Option(help="Finished trials already in the one job, comma-separated.")] = (
        "100,1000,10000"),
    measured: Annotated[int, typer.Option(help="Trials timed after each size.")] = 200,
    jobs: Annotated[int, typer.Option(help="Jobs running at once in the last case (0: skip it).")] = 50,
    strategy: Annotated[str, typer.Option(help="The jobs' strategy (random, evolution, ...).")] = "random",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Scheduler CPU time per trial as a job's finished trials grow, and with many jobs at once."""
    from rich.table import Table

    from bench import scheduler_cost
    from bench.strategies import write_json

    report = scheduler_cost.run(database_url=database_url, broker=broker, table=table,
                                sizes=_counts(sizes, "--sizes", "100,1000"),
                                measured=measured, jobs=jobs, strategy=strategy)
    table_out = Table(title=f"scheduler cost ({strategy}, {report['settings']['finished_per_pass']} trials "
                            "finished per pass)")
    for column in ("jobs", "finished/job", "max_parallel", "trials timed", "CPU ms/trial", "wall ms/trial",
                   "SQL/trial", "idle pass CPU ms", "takeover CPU ms"):
        table_out.add_column(column, justify="right")
    for c in report["cases"]:
        table_out.add_row(*(str(c[k]) for k in ("jobs", "finished_per_job", "max_parallel", "measured_trials",
                                                "cpu_ms_per_trial", "wall_ms_per_trial", "statements_per_trial",
                                                "idle_pass_cpu_ms", "takeover_cpu_ms")))
    console.print(table_out)
    many = report["cpu_per_trial_many_jobs_vs_one"]
    console.print(f"CPU per trial, largest job / smallest: {report['cpu_per_trial_largest_vs_smallest']}x"
                  + (f"; {jobs} jobs / one: {many}x" if many is not None else ""))
    if json_out:
        console.print(f"wrote {write_json(report, json_out)}")


@bench_app.command("neighbour")
def bench_neighbour(
    table: BenchTableOption = BENCH_TABLE,
    database_url: BenchDatabaseOption = BENCH_DATABASE,
    broker: BenchBrokerOption = BENCH_BROKER,
    small_trials: Annotated[int, typer.Option(help="Table look-ups of the small job.")] = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """A small job's wall time alone and beside a job with the largest predictor, in one scheduler."""
    from rich.table import Table

    from bench import heavy_neighbour
    from bench.strategies import write_json

    report = heavy_neighbour.run(database_url=database_url, broker=broker, table=table, small_trials=small_trials)
    table_out = Table(title=f"{small_trials} look-ups beside a PNAS job with the largest predictor")
    for column in ("layout", "small job s", "heavy job's first predicted trials s"):
        table_out.add_column(column)
    for layout in report["layouts"]:
        table_out.add_row(layout["layout"], str(layout["small_s"]), str(layout["heavy_first_round_s"] or "-"))
    console.print(table_out)
    console.print("memory a fit holds: " + "; ".join(f"{k} {v} MiB" for k, v in report["fit_memory_mb"].items()))
    if json_out:
        console.print(f"wrote {write_json(report, json_out)}")


@bench_app.command("scaling")
def bench_scaling(
    table: BenchTableOption = BENCH_TABLE,
    database_url: BenchDatabaseOption = BENCH_DATABASE,
    broker: BenchBrokerOption = BENCH_BROKER,
    workers: Annotated[str, typer.Option(help="Worker process counts, comma-separated.")] = "1,2,4",
    tabular_trials: Annotated[int, typer.Option(help="Trials per run on the tabular workload (0: skip).")] = 1000,
    training_trials: Annotated[int, typer.Option(help="Trials per run of real training (0: skip).")] = 24,
    repeats: Annotated[int, typer.Option(help="Runs of each setting; the fastest is kept (shared machines).")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """End-to-end throughput with 1, 2 and 4 worker processes, tabular and real training, and the bottleneck."""
    from rich.table import Table

    from bench import scaling
    from bench.strategies import write_json

    report = scaling.run(database_url=database_url, broker=broker, table=table,
                         workers=_counts(workers, "--workers", "1,2,4"),
                         tabular_trials=tabular_trials, training_trials=training_trials, repeats=repeats)
    table_out = Table(title="scaling with worker processes (production path)")
    for column in ("workload", "workers", "trials/s", "speedup", "CPU ms/trial: worker / scheduler / api / postgres",
                   "bottleneck"):
        table_out.add_column(column)
    for name, workload in report["workloads"].items():
        for r in workload["runs"]:
            cpu = r["cpu_ms_per_trial"]
            table_out.add_row(name, str(r["worker_processes"]), f"{r['trials_per_s']:.2f}",
                              f"{r['speedup_vs_one_worker']:.2f}x",
                              " / ".join(f"{cpu[p]:.3g}" for p in ("worker", "scheduler", "api", "postgres")),
                              r["bottleneck"])
    console.print(table_out)
    if json_out:
        console.print(f"wrote {write_json(report, json_out)}")


@bench_app.command("fairness")
def bench_fairness(
    table: BenchTableOption = BENCH_TABLE,
    training_jobs: int = 3,
    training_trials: Annotated[int, typer.Option(help="Trials per training job (digits, quickstart-like).")] = 20,
    epochs: int = 4,
    tabular_trials: int = 40,
    workers: Annotated[int, typer.Option(help="The embedded stack's worker processes (training slots).")] = 2,
    limit_s: Annotated[float, typer.Option(help="How long the look-up job may take before it counts as "
                                                "not finished.")] = 600.0,
    window_s: Annotated[float, typer.Option(help="When the training jobs' queue waits are read, in seconds after "
                                                 "the look-up job's submission.")] = 120.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """A table look-up job submitted behind training jobs: its wall time with the workers shared, and without."""
    from rich.table import Table

    from bench import fairness
    from bench.strategies import write_json

    report = fairness.run(table=table, training_jobs=training_jobs, training_trials=training_trials, epochs=epochs,
                          tabular_trials=tabular_trials, workers=workers, limit_s=limit_s, window_s=window_s)
    table_out = Table(title=f"{tabular_trials} look-ups behind {training_jobs} training jobs, {workers} workers")
    for column in ("layout", "look-ups wall s", "their wait median / max s",
                   f"training jobs at {window_s:g} s: wait median / max s, trials done"):
        table_out.add_column(column)
    for layout in report["layouts"]:
        tab = layout["tabular"]
        wall = f"{tab['wall_s']}" if tab["finished"] else f"> {tab['limit_s']:g} ({tab['completed']} done)"
        waits = "; ".join(f"{t['queue_wait']['median_s']} / {t['queue_wait']['max_s']}, {t['completed']}"
                          for t in layout["training"])
        table_out.add_row(layout["layout"], wall, f"{tab['queue_wait']['median_s']} / {tab['queue_wait']['max_s']}",
                          waits)
    console.print(table_out)
    if json_out:
        console.print(f"wrote {write_json(report, json_out)}")


@bench_app.command("gpu")
def bench_gpu(
    gpu: Annotated[int, typer.Option(help="The GPU every worker process is pinned to.")] = 0,
    per_gpu: Annotated[str, typer.Option(help="Trials per GPU (worker processes), comma-separated.")] = "1,2,4",
    datasets: Annotated[str, typer.Option(help="Training datasets, comma-separated.")] = "digits,mnist1d",
    trials_per_process: int = 6,
    epochs: int = 3,
    database_url: Annotated[str | None, typer.Option(help="Default: an SQLite file (embedded).")] = None,
    broker: Annotated[str | None, typer.Option(help="Default: the filesystem broker (embedded).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """GPU utilisation and throughput with 1 against several trials per GPU (needs CUDA and nvidia-smi)."""
    from rich.table import Table

    from bench import gpu as bench
    from bench.strategies import write_json

    try:
        report = bench.run(gpu=gpu, per_gpu=_counts(per_gpu, "--per-gpu", "1,2,4"),
                           datasets=tuple(d.strip() for d in datasets.split(",") if d.strip()),
                           trials_per_process=trials_per_process, epochs=epochs, database_url=database_url,
                           broker=broker)
    except bench.NoGpu as exc:
        err_console.print(f"[yellow]no GPU benchmark:[/] {escape(str(exc))}. docs/gpu.md describes the method.")
        if json_out:
            console.print(f"wrote {write_json({'measured': False, 'reason': str(exc)}, json_out)}")
        raise typer.Exit(2) from None
    table_out = Table(title=f"GPU {report['gpu_index']} ({report['gpu']}): trials per GPU")
    for column in ("dataset", "trials/GPU", "trials/s", "GPU util % (mean)", "memory MiB (max)", "throughput x",
                   "util x"):
        table_out.add_column(column, justify="right")
    for r in report["results"]:
        table_out.add_row(r["dataset"], str(r["trials_per_gpu"]), f"{r['trials_per_s']:.2f}",
                          str(r["gpu_utilisation_mean"]), str(r["gpu_memory_max_mib"]),
                          f"{r['throughput_vs_fewest']:.2f}", str(r["utilisation_vs_fewest"]))
    console.print(table_out)
    if json_out:
        console.print(f"wrote {write_json(report, json_out)}")


@bench_app.command("api")
def bench_api(
    table: BenchTableOption = BENCH_TABLE,
    database_url: BenchDatabaseOption = BENCH_DATABASE,
    broker: BenchBrokerOption = BENCH_BROKER,
    part: Annotated[str, typer.Option(help="'load' (requests while a job runs), 'big' (a job of many trials) "
                                           "or 'both'.")] = "both",
    requests: int = 2000,
    concurrency: int = 50,
    api_workers: Annotated[int, typer.Option(help="uvicorn worker processes serving the load.")] = 2,
    generator: Annotated[str, typer.Option(help="'lean' (asyncio HTTP/1.1 keep-alive) or 'httpx' "
                                                "(AsyncClient, costlier per request).")] = "lean",
    trials: Annotated[int, typer.Option(help="Stored trials of the big job.")] = 100_000,
    repeats: Annotated[int, typer.Option(help="Timed requests of each kind on the big job.")] = 21,
    auth: Annotated[bool, typer.Option(help="Load: tokens required (as beyond loopback), every user sends one.")]
    = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """API latency: many requests while a job runs, and a job of 100,000 trials (docs/reliability.md)."""
    from rich.table import Table

    from bench import api_load
    from bench.strategies import write_json

    parts = {"both": ("load", "big"), "load": ("load",), "big": ("big",)}.get(part)
    if parts is None:
        raise typer.BadParameter(f"expected load, big or both, got {part!r}", param_hint="--part")
    if generator not in ("lean", "httpx"):
        raise typer.BadParameter(f"expected lean or httpx, got {generator!r}", param_hint="--generator")
    report = api_load.run(database_url=database_url, broker=broker, table=table, parts=parts, requests=requests,
                          concurrency=concurrency, api_workers=api_workers, generator=generator, trials=trials,
                          repeats=repeats, auth=auth)
    for r in (report[name] for name in ("load", "load_uncached") if name in report):
        kept = f"answers kept {r['api_cache_seconds']:g} s" if r["api_cache_seconds"] else "no answers kept"
        kept += ", tokens required" if r["auth"] else ""
        out = Table(title=f"{r['requests']} requests at concurrency {r['concurrency']} while a job runs "
                          f"({r['api_workers']} API processes, {r['generator']} client, {kept})")
        for column in ("requests", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s", "API CPU ms/req", "job trials/s"):
            out.add_column(column, justify="right")
        latency = ("p50_ms", "p95_ms", "p99_ms")
        out.add_row("all", str(r["errors"]), *(str(r[k]) for k in latency), str(r["requests_per_s"]),
                    str(r["api_cpu_ms_per_request"]), str(r["job_trials_per_s"]))
        for kind, figures in r["by_request"].items():
            out.add_row(kind, "", *(str(figures[k]) for k in latency), "", "", "")
        console.print(out)
    if "big" in report:
        r = report["big"]
        out = Table(title=f"a job of {r['trials']} trials (median of {r['repeats']})")
        for column in ("request", "median ms", "max ms", "most rows any plan node read"):
            out.add_column(column, justify="right")
        for kind, figures in r["timings"].items():
            most = max(node["rows"] for statement in r["plans"][kind] for node in statement["plan"])
            out.add_row(kind, str(figures["median_ms"]), str(figures["max_ms"]), str(most))
        console.print(out)
    if json_out:
        console.print(f"wrote {write_json(report, json_out)}")


@bench_app.command("training")
def bench_training(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
    epochs: int = 2,
    repeats: Annotated[int, typer.Option(help="Timed runs of each loop (after one warm-up).")] = 3,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Samples per second of Scion's trainer against a minimal hand-written loop (ratio)."""
    from rich.table import Table

    from bench import training

    report = training.run(epochs=epochs, repeats=repeats, device=device)
    table = Table(title=f"training throughput ({report['results'][0]['device']}, {report['threads']} threads)")
    for column in ("dataset", "network", "scion samples/s", "minimal samples/s", "ratio"):
        table.add_column(column, justify="right")
    for r in report["results"]:
        table.add_row(r["dataset"], f"nb201 C={r['channels']} N={r['cells_per_stage']}",
                      f"{r['samples_per_s_scion']:,.0f}", f"{r['samples_per_s_minimal']:,.0f}", f"{r['ratio']:.3f}")
    console.print(table)
    if json_out:
        console.print(f"wrote {training.write(report, json_out)}")


@bench_app.command("strategies")
def bench_strategies(
    table: Annotated[Path, typer.Option(help="A NAS-Bench-201-format CSV (arch, val_acc_12ep, test_acc_200ep).")],
    strategies: Annotated[str, typer.Option(help="Comma-separated: rs, rea, ls, reinforce, bananas, pnas, tpe, "
                                                 "grid or any registered strategy name.")] = "rs,rea",
    budget: Annotated[int, typer.Option(help="Evaluations per run.")] = 100,
    seeds: Annotated[int, typer.Option(help="Runs per strategy (seeds 0..N-1).")] = 30,
    parallel: Annotated[str, typer.Option(help="Simulated workers P; a comma list (1,8) runs each.")] = "1",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report (with curves) here.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the markdown table here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot of the incumbent curves here.")] = None,
    jobs: Annotated[int | None, typer.Option(help="Processes; default one per CPU.")] = None,
    config: Annotated[list[str] | None, typer.Option(
        help="Per-strategy config overrides, NAME=JSON, e.g. rea='{\"population_size\": 10}'; repeatable.")] = None,
    update_doc: Annotated[Path | None, typer.Option(
        help="Replace the generated block of this doc (e.g. docs/benchmarks.md) with the markdown table.")] = None,
) -> None:
    """Run search strategies against a tabular benchmark with P simulated asynchronous workers."""
    import shlex

    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench import strategies as bench

    ps = list(_counts(parallel, "--parallel", "1 or 1,8"))
    command = ["scion", "bench", "strategies", "--table", str(table), "--strategies", strategies,
               "--budget", str(budget), "--seeds", str(seeds), "--parallel", parallel]
    for flag, value in (("--json", json_out), ("--markdown", markdown), ("--plot", plot), ("--jobs", jobs)):
        command += [flag, str(value)] if value is not None else []
    for item in config or []:
        command += ["--config", item]
    try:
        overrides = bench.parse_config_overrides(config or [])
        with Progress(TextColumn("runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True) as progress:
            task = progress.add_task("runs", total=None)
            report = bench.run_benchmark(
                table, strategies.split(","), budget=budget, seeds=seeds, parallel=ps, jobs=jobs,
                overrides=overrides, command=shlex.join(command),
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        bench.print_rich(report, console)
        written = [bench.write_json(report, json_out)] if json_out else []
        written += [bench.write_markdown(report, markdown)] if markdown else []
        written += [bench.plot(report, plot)] if plot else []
        written += [bench.update_doc(update_doc, bench.to_markdown(report))] if update_doc else []
    except bench.BenchError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    for path in written:
        console.print(f"wrote {path}")


def _json_option(text: str | None, option: str) -> dict[str, Any]:
    """A JSON object from a bench option, or a usage error naming it."""
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON ({exc})", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter("expected a JSON object of settings", param_hint=option)
    return value


@bench_app.command("one-shot")
def bench_one_shot(
    part: Annotated[str, typer.Option(help="ranking, pipelines, collapse, all, or ground-truth (only the "
                                           "ranking's standalone trainings, filling the cache).")] = "all",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report here.")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where the ranking's ground-truth cache is kept.")] = Path("bench/out"),
    epochs: Annotated[int, typer.Option(help="The standalone recipe's epochs (ground truth, evolution's "
                                             "candidates, every retraining).")] = 4,
    channels: Annotated[int, typer.Option(help="NB201 skeleton: channels of the first stage.")] = 8,
    cells_per_stage: Annotated[int, typer.Option(help="NB201 skeleton: cells per stage.")] = 1,
    datasets: Annotated[str, typer.Option(help="Ranking: datasets, comma-separated.")] = "mnist1d,digits",
    cells: Annotated[int, typer.Option(help="Ranking: NB201 cells sampled and trained standalone.")] = 100,
    sample_seed: Annotated[int, typer.Option(help="Ranking: which cells are sampled.")] = 0,
    proxy_batch_size: Annotated[int, typer.Option(help="Ranking: the zero-cost proxies' batch.")] = 64,
    pipelines: Annotated[str, typer.Option(help="Pipelines to run, comma-separated: spos, darts, enas, "
                                                "evolution (the baseline).")] = "spos,darts,enas,evolution",
    seeds: Annotated[int, typer.Option(help="Pipelines: seeds 0..N-1 of each.")] = 3,
    candidates: Annotated[int, typer.Option(help="Pipelines: candidates regularized evolution trains.")] = 100,
    search_trials: Annotated[int, typer.Option(help="Pipelines: sub-networks SPOS + evolution scores.")] = 100,
    retrain_top_k: Annotated[int, typer.Option(help="Pipelines: networks each one-shot pipeline retrains.")] = 3,
    workers: Annotated[int, typer.Option(help="Pipelines: worker processes of the embedded stack.")] = 2,
    collapse_seeds: Annotated[int, typer.Option(help="Collapse: DARTS runs per remedy.")] = 5,
    remedies: Annotated[str, typer.Option(help="Collapse: remedies to run, comma-separated: none (plain DARTS), "
                                               "darts-, early-stop (DARTS-ES).")] = "none,darts-,early-stop",
    spos: Annotated[str | None, typer.Option(help="SPOS settings as JSON, over the bench's (e.g. '{\"epochs\": 1}').")]
    = None,
    darts: Annotated[str | None, typer.Option(help="DARTS settings as JSON, over the bench's.")] = None,
    enas: Annotated[str | None, typer.Option(help="ENAS settings as JSON, over the bench's.")] = None,
    threads: Annotated[int, typer.Option(help="torch threads of the in-process training (the machine is shared).")]
    = 1,
) -> None:
    """One-shot NAS: how inherited weights and proxies rank cells, what pipelines cost and find, DARTS collapse."""
    import shlex

    from bench import one_shot as bench
    from bench.strategies import write_json

    parts = {"all": bench.PARTS, bench.GROUND_TRUTH: (bench.GROUND_TRUTH,)}.get(part) or (
        (part,) if part in bench.PARTS else None)
    if parts is None:
        raise typer.BadParameter(f"expected {', '.join(bench.PARTS)}, all or {bench.GROUND_TRUTH}, got {part!r}",
                                 param_hint="--part")
    methods = {"spos": _json_option(spos, "--spos"), "darts": _json_option(darts, "--darts"),
               "enas": _json_option(enas, "--enas")}
    given = {"--part": part, "--out-dir": out_dir, "--epochs": epochs, "--channels": channels,
             "--cells-per-stage": cells_per_stage, "--datasets": datasets, "--cells": cells,
             "--sample-seed": sample_seed, "--pipelines": pipelines, "--seeds": seeds, "--candidates": candidates,
             "--search-trials": search_trials, "--retrain-top-k": retrain_top_k, "--workers": workers,
             "--collapse-seeds": collapse_seeds, "--remedies": remedies, "--spos": spos, "--darts": darts,
             "--enas": enas, "--json": json_out}
    command = ["scion", "bench", "one-shot"] + [x for flag, value in given.items() if value is not None
                                                for x in (flag, str(value))]

    def progress(line: str) -> None:
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)

    try:
        report = bench.run(
            parts, progress=progress, threads=threads, command=shlex.join(command), out_dir=out_dir, epochs=epochs,
            channels=channels, cells_per_stage=cells_per_stage,
            datasets=tuple(d.strip() for d in datasets.split(",") if d.strip()), cells=cells, sample_seed=sample_seed,
            proxy_batch_size=proxy_batch_size, pipelines=tuple(p.strip() for p in pipelines.split(",") if p.strip()),
            seeds=seeds, candidates=candidates, search_trials=search_trials, retrain_top_k=retrain_top_k,
            workers=workers, collapse_seeds=collapse_seeds, methods=methods,
            remedies=tuple(r.strip() for r in remedies.split(",") if r.strip()),
        )
    except bench.BenchError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    typer.echo(bench.markdown(report))
    if json_out:
        console.print(f"wrote {write_json(report, json_out)}")
