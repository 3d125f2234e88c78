"""The job watcher page at GET /: served as it ships, and (where Chromium is installed) rendered
by a real headless browser against a real server, the way a person would open it."""
from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.main import create_app
from storage.db import session_scope, utcnow
from storage.models import Job, Trial

pytestmark = pytest.mark.timeout(120)

ARCH = ["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "none"]
BEST_KEY = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|avg_pool_3x3~1|none~2|"
OTHER_KEY = "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
# Markup in user-controlled text must reach the page as text, never as elements.
JOB_NAME = "web <b>watch</b> & 'quotes'"
TRIAL_ERROR = "CUDA out of memory <img src=x onerror=alert(1)>"


def spec(name: str) -> dict:
    return {
        "name": name,
        "space": {"type": "nb201", "channels": 8, "cells_per_stage": 1},
        "strategy": {"type": "random"},
        "evaluator": {"type": "train", "dataset": "digits", "epochs": 2},
        "budget": {"max_trials": 5, "max_parallel": 2},
    }


def test_page_is_served_and_uses_the_public_api() -> None:
    with TestClient(create_app()) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<title>" in html and "Scion" in html
    # The paths the page reads, as the API serves them.
    for path in ('"/v1/jobs"', "/trials?sort=", "objective", "limit="):
        assert path in html, path
    # Self-contained: no script, style or font from anywhere else, and no HTML built from strings.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html and "document.write" not in html
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_page_is_not_in_the_api_schema() -> None:
    with TestClient(create_app()) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths


def _add_trials(db_url: str, job_id: int) -> None:
    """Two finished trials and a running one, written the way the workers would (the scheduler
    has not told the strategy yet)."""
    now = utcnow()
    with session_scope(db_url) as session:
        for number, status, key, objective, error in (
            (0, "completed", OTHER_KEY, 0.412, None),
            (1, "completed", BEST_KEY, 0.9375, None),
            (2, "failed", OTHER_KEY, None, TRIAL_ERROR),
            (3, "running", OTHER_KEY, None, None),
        ):
            finished = status in ("completed", "failed")
            session.add(Trial(
                job_id=job_id, number=number, status=status, arch=ARCH, arch_key=key, attempts=1,
                told=False, created_at=now - timedelta(seconds=30), started_at=now - timedelta(seconds=20),
                heartbeat_at=now, finished_at=now if finished else None,
                objective=objective, score=objective, error=error,
                metrics={"val_acc": objective, "params": 12345} if objective is not None else None,
            ))


def _render(url: str, tmp_path: Path, chromium: Path = Path("/usr/bin/chromium")) -> str:
    """The DOM after the page's scripts ran, as headless Chromium serialises it, with no network
    beyond this machine (no name resolves but the loopback's; anything else goes to a dead proxy)."""
    result = subprocess.run(
        [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
         "--dump-dom", url],
        check=False, capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_browser_shows_jobs_and_trials(live_server: str, sqlite_env: str, tmp_path: Path, chromium: Path) -> None:
    with httpx.Client(base_url=live_server, timeout=10) as api:
        response = api.post("/v1/jobs", json=spec(JOB_NAME))
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        other = api.post("/v1/jobs", json=spec("second-search"))
        assert other.status_code == 201, other.text
    _add_trials(sqlite_env, job_id)

    # The list: both jobs, with their names as text (markup escaped, not turned into elements).
    dom = _render(f"{live_server}/", tmp_path)
    assert "second-search" in dom
    assert "web &lt;b&gt;watch&lt;/b&gt; &amp; 'quotes'" in dom
    assert "<b>watch</b>" not in dom
    assert "3 / 5" in dom  # trials done (2 completed + 1 failed) / max of the first job
    assert "0.9375" in dom  # its best objective

    # One job opened (the page keeps the selection in the URL): its best trial and its trials.
    dom = _render(f"{live_server}/#job={job_id}", tmp_path)
    assert 'id="detail" class="card"' in dom and 'id="detail" class="card" hidden' not in dom
    assert "Best trial #1" in dom
    assert BEST_KEY in dom and OTHER_KEY in dom
    assert "CUDA out of memory &lt;img src=x onerror=alert(1)&gt;" in dom
    assert "<img" not in dom
    # Trials best first: trial 1 (0.9375) is listed before trial 0 (0.412).
    trials_table = dom[dom.index('id="trials"'):]
    assert trials_table.index("0.9375") < trials_table.index("0.4120")


def test_browser_counts_every_trial_outcome_and_colours_the_bar_by_the_jobs_end(
        live_server: str, sqlite_env: str, tmp_path: Path, chromium: Path) -> None:
    with httpx.Client(base_url=live_server, timeout=10) as api:
        failed_job = api.post("/v1/jobs", json=spec("ended-failed")).json()["id"]
        cancelled_job = api.post("/v1/jobs", json=spec("ended-cancelled")).json()["id"]
        assert api.post(f"/v1/jobs/{cancelled_job}/cancel").status_code == 200
    now = utcnow()
    with session_scope(sqlite_env) as session:
        for number, status in enumerate(("completed", "failed", "failed", "stopped", "cancelled")):
            session.add(Trial(job_id=failed_job, number=number, status=status, arch=ARCH,  # as workers write them
                              arch_key=f"{OTHER_KEY}{number}", attempts=1, told=False, created_at=now,
                              started_at=now, finished_at=now,
                              objective=0.5 if status == "completed" else None,
                              score=0.5 if status == "completed" else None))
        session.execute(update(Job).where(Job.id == failed_job).values(status="failed", error="no luck",
                                                                        trials_created=5, finished_at=now))

    dom = _render(f"{live_server}/", tmp_path, chromium)
    # The failed job: 4 of 5 trials evaluated, drawn in the failure colour, the rest named by outcome.
    assert re.search(r'<div class="bar s-failed"><span style="width: 80(\.0)?%;">', dom), dom[-3000:]
    assert "4 / 5" in dom and "2 failed · 1 stopped · 1 cancelled" in dom
    # The cancelled job: nothing evaluated, in the neutral colour.
    assert re.search(r'<div class="bar s-cancelled"><span style="width: 0(\.0)?%;">', dom)
    # The bar's colour is the job's status colour; no rule paints a finished bar green whatever its end.
    html = httpx.get(f"{live_server}/").text
    assert "background: var(--c, var(--accent))" in html and ".s-failed { --c: var(--failed); }" in html
    assert ".bar.done" not in html

    dom = _render(f"{live_server}/#job={failed_job}", tmp_path, chromium)
    tiles = dict(re.findall(r'<div class="tile"><div class="label">([^<]+)</div><div class="value">(\d+)', dom))
    assert {k: tiles[k] for k in ("Completed", "Failed", "Stopped", "Cancelled")} == {
        "Completed": "1", "Failed": "2", "Stopped": "1", "Cancelled": "1"}, tiles
