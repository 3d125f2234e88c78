"""Process-wide settings, every one overridable by a ``SCION_…`` environment variable.

With nothing set, Scion runs embedded: a SQLite file and a filesystem broker under
``SCION_HOME`` (``./.scion``), so a first run needs no servers.
"""
from __future__ import annotations

import ipaddress
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error never echoes the settings (and so no secret).
    model_config = SettingsConfigDict(env_prefix="SCION_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    home: Path = Field(Path(".scion"), description="Where the embedded stack keeps its files.")
    database_url: str | None = Field(None, repr=False, description="SQLAlchemy URL; SQLite under home by default.")
    broker_url: str | None = Field(None, repr=False, description="Celery broker; filesystem under home by default.")
    api_url: str | None = Field(None, description="A running Scion API the CLI talks to.")
    # Secrets: kept out of repr() (and so out of logs and tracebacks); each may instead be read
    # from a file named by SCION_…_FILE (docker secrets), whose content is the value.
    database_url_file: Path | None = Field(None, description="A file holding database_url (docker secrets).")
    broker_url_file: Path | None = Field(None, description="A file holding broker_url (docker secrets).")
    token: str | None = Field(None, repr=False, description="The API token the CLI and SDK send (Bearer).")
    token_file: Path | None = Field(None, description="A file holding token (docker secrets).")

    auth: Literal["auto", "on", "off"] = Field(
        "auto", description="API tokens: 'auto' requires them whenever the API listens on anything but loopback."
    )
    api_host: str | None = Field(
        None, description="The address the API listens on; `scion api --host` sets it (for auth 'auto')."
    )
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body the API reads (413 above).")
    # Slow clients (docs/security.md): a connection that trickles its request holds a socket and a
    # buffer, never a request slot, and is answered 408 and closed once it falls behind.
    api_header_timeout_seconds: float = Field(
        10.0, gt=0,
        description="How long a request line and its headers may take to arrive, counted from when the connection "
                    "opens or its previous response ends (then 408 and closed; api/slow_clients.py).",
    )
    api_max_header_bytes: int = Field(
        64 * 1024, ge=4096, description="Largest request line and headers the API reads (431 and closed above)."
    )
    api_body_timeout_seconds: float = Field(
        10.0, gt=0,
        description="How long a request body may take to start arriving; after that it must keep up "
                    "api_body_min_bytes_per_second on average, or it is answered 408 and its connection closed.",
    )
    api_body_min_bytes_per_second: int = Field(
        10 * 1024, ge=1, description="Slowest average rate at which a request body may arrive after its grace."
    )
    max_trials_cap: int = Field(100_000, ge=1, description="Largest budget.max_trials a job may ask for.")
    max_parallel_cap: int = Field(1024, ge=1, description="Largest budget.max_parallel a job may ask for.")
    max_page_size: int = Field(500, ge=1, description="Largest page (limit) a listing returns.")
    supernet_memory_mb: float = Field(
        16384, gt=0,
        description="Largest training state a one-shot job's supernet may need, estimated at submission from its "
                    "parameters (weights, gradients and momentum; two more copies for second-order DARTS), in MiB.",
    )
    # What one network of a job may cost (scion/budgets.py): the most any network of its space costs
    # is checked at submission, the network about to be built by the worker.
    max_model_params: int = Field(100_000_000, ge=1, description="Most parameters a network of a job may have.")
    max_model_flops: float = Field(
        2e10, gt=0, description="Most forward FLOPs per example a network of a job may compute (a multiply-add is 2)."
    )
    max_activation_mb: float = Field(
        16384, gt=0,
        description="Most memory, in MiB, a network's activations may take for one training batch (float32, every "
                    "layer's output at the largest batch size the job trains with).",
    )

    lease_seconds: float = Field(30.0, gt=0, description="How long a scheduler's claim on a job lasts unrenewed.")
    scheduler_poll_seconds: float = Field(0.2, gt=0, description="Pause between scheduler passes.")
    scheduler_failed_passes: int = Field(
        3, ge=1,
        description="A job whose scheduler passes fail this many times in a row for a reason other than the database "
                    "being unreachable (a row the database refuses, a strategy that raises) fails, with the error as "
                    "its reason, instead of being retried forever.",
    )
    strategy_checkpoint_seconds: float = Field(
        10.0, ge=0,
        description="How often a job's strategy state is saved whole; in between only the calls made to the "
                    "strategy are logged, and a scheduler taking the job over replays them. 0 saves it every pass.",
    )
    heartbeat_seconds: float = Field(5.0, gt=0, description="How often a worker touches a running trial.")
    heartbeat_timeout_seconds: float = Field(60.0, gt=0, description="A running trial silent this long is lost.")
    stop_grace_seconds: float = Field(
        10.0, gt=0,
        description="How long a trial past its time limit, or asked to stop (cancelled, stopped by the scheduler), "
                    "may take to stop inside one long step before its worker process is ended and replaced "
                    "(worker/stopping.py).",
    )
    checkpoint_seconds: float = Field(
        300.0, ge=0,
        description="A training trial saves its state after every epoch, and within an epoch once this long has "
                    "passed since its last save; a re-run attempt continues from there. 0: after every batch.",
    )
    broker_visibility_timeout: int = Field(
        12 * 3600, gt=0, description="Seconds before an unacknowledged message is redelivered; longer than any trial."
    )
    resend_after_seconds: float = Field(
        60.0, gt=0,
        description="A trial queued this long while its broker queue is empty lost its message (e.g. the broker "
                    "restarted without persistence) and is sent again.",
    )
    database_retry_seconds: float = Field(
        300.0, gt=0,
        description="How long a worker retries a claim, an epoch's report or a result while the database is "
                    "unreachable, before it gives the attempt up (the trial is then re-run).",
    )

    # Speed for cheap trials and busy APIs. Each of these lives in one module and is off at 0,
    # which leaves the plain path: every poll read from the database, one trial per message, a
    # scheduler pass for every nudge.
    api_cache_seconds: float = Field(
        0.25, ge=0, le=60,
        description="How long each API process answers repeated reads of a job (its status, a page of its trials, "
                    "its best trial) and checks of a token from memory rather than the database (api/poll_cache.py); "
                    "a cancel through a process shows in its answers at once. 0 turns this off.",
    )
    scheduler_batch_seconds: float = Field(
        0.05, ge=0,
        description="A job's new trials that have been finishing in well under this are sent several to a "
                    "message, as many as take about this long (scheduler/pace.py). 0 turns this off: one trial "
                    "per message.",
    )
    scheduler_gather_seconds: float = Field(
        0.05, ge=0,
        description="How long a scheduler pass woken by a finished trial may wait for more to finish while the "
                    "workers still have trials queued, so that one pass tells and replaces several "
                    "(scheduler/gather.py). 0 turns this off: a pass at every nudge.",
    )

    scheduler_aside_seconds: float = Field(
        0.05, ge=0,
        description="How long a scheduler pass waits for a job's strategy to answer its asks before leaving them to "
                    "finish on a thread of the job's own and serving the other jobs; a later pass writes the "
                    "proposals (scheduler/aside.py). 0 turns this off: the asks run in the pass, however long they "
                    "take, and every other job of the scheduler waits for them.",
    )

    # Sharing the workers between jobs. Each is on by default; false gives the plain path it
    # replaces, for measurement (scion bench fairness).
    worker_split_queues: bool = Field(
        True,
        description="`scion worker` serving gpu and cpu runs the cheap queues (cpu, export) on a Celery worker of "
                    "their own beside the training one (worker/consumers.py), so a table look-up never waits behind "
                    "a training trial. False: one Celery worker for every queue.",
    )
    scheduler_fair_share: bool = Field(
        True,
        description="Cap each job's trials in flight at its fair share of the live worker slots serving its queue "
                    "(scheduler/fair_share.py), so a job submitted later is not stuck behind earlier jobs' queued "
                    "trials. False: budget.max_parallel alone (jobs served in the order they queued).",
    )

    max_dataset_mb: float = Field(
        4096, gt=0,
        description="Most memory, in MiB, a file dataset's inputs may take once loaded (float32, or the file's own "
                    "type where wider), sized from its headers at submission and again by the worker before it reads "
                    "the data (scion/configs/dataset_size.py).",
    )
    worker_device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    worker_data_cache_mb: int = Field(
        2048, ge=0,
        description="Memory each worker process keeps loaded datasets in, least recently used first out; a dataset "
                    "larger than this is loaded for its trial alone. 0: every trial loads its data.",
    )
    supernet_devices: str = Field(
        "",
        description="Devices a one-shot job's supernet trial trains on together, comma-separated ('cuda:0,cuda:1'): "
                    "DistributedDataParallel, one process per device, each taking its share of every batch "
                    "(worker/one_shot/distributed.py). Empty: the worker's own device alone. Run such a worker with "
                    "--concurrency 1, since the trial takes those devices from the worker's other processes.",
    )
    artifacts: Path | None = Field(
        None, description="Trained weights and checkpoints; a path every worker shares (default: home/artifacts)."
    )
    export_wait_seconds: float = Field(
        30.0, ge=0,
        description="How long a model download waits for a worker to export the network before it answers 202 "
                    "with Retry-After (the client asks again; the export goes on).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="What every process logs (scion/logs.py): debug adds each API poll (GET).")
    log_format: Literal["text", "json"] = Field(
        "text", description="'text': timestamped lines; 'json': one JSON object a line (ts, level, logger, msg, "
                            "and job_id, trial_id, worker, device where known).")

    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description=(
            "Directories that dataset files and benchmark tables named in job specs must lie under (symlinks "
            "resolved); a JSON list or an os.pathsep-separated string. Default: home/data, ./data, ../shared/data."
        ),
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p for p in text.split(os.pathsep) if p.strip()]
        return value

    @model_validator(mode="after")
    def _default_roots(self) -> Settings:
        if not self.data_roots:
            self.data_roots = [self.home / "data", Path("data"), Path("..") / "shared" / "data"]
        return self

    @model_validator(mode="after")
    def _secret_files(self) -> Settings:
        """SCION_X_FILE names a file whose content (surrounding whitespace dropped) is SCION_X."""
        for name in ("database_url", "broker_url", "token"):
            path: Path | None = getattr(self, f"{name}_file")
            if path is None:
                continue
            if getattr(self, name) is not None:
                raise ValueError(f"set {name} or {name}_file, not both")
            try:
                value = path.expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:  # the path only, never anything read
                raise ValueError(f"{name}_file: cannot read {path}: {exc.strerror or type(exc).__name__}") from None
            if not value:
                raise ValueError(f"{name}_file: {path} is empty")
            setattr(self, name, value)
        return self

    @property
    def auth_enabled(self) -> bool:
        """Whether the API asks for tokens: 'on', or 'auto' with a non-loopback listen address.
        An app served without `scion api` (in-process, tests) has no known address: open."""
        if self.auth != "auto":
            return self.auth == "on"
        return self.api_host is not None and not is_loopback(self.api_host)

    def resolved_data_roots(self) -> list[Path]:
        """The data roots as absolute paths with symlinks resolved (relative ones from the working directory)."""
        return list(dict.fromkeys(root.expanduser().resolve() for root in self.data_roots))

    def resolved_home(self) -> Path:
        home = self.home.expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        return home

    @property
    def embedded_db_file(self) -> Path:
        """The SQLite file the database is without SCION_DATABASE_URL (named, its folder not created)."""
        return self.home.expanduser().resolve() / "scion.db"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.resolved_home()
        return f"sqlite:///{self.embedded_db_file}"

    @property
    def artifact_root(self) -> Path:
        return (self.artifacts or self.resolved_home() / "artifacts").expanduser().resolve()

    @property
    def broker(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        folder = self.resolved_home() / "broker"
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mask_url(url: str | None) -> str:
    """A URL fit to print: its password (if any) replaced by ***."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
