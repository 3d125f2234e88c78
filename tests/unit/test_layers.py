"""The layering of ARCHITECTURE.md holds: import-linter's contracts (pyproject.toml) pass, and the
API and the scheduler run, and validate a job, without torch ever being imported."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is a dev dependency: pip install -e '.[dev]'"
    done = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_api_and_the_scheduler_never_import_torch(tmp_path: Path) -> None:
    """Imported, built and asked to validate a training job (whose space can build networks and
    whose evaluator trains them), neither process has torch in ``sys.modules``."""
    script = textwrap.dedent("""
        import sys
        import api.main
        import scheduler.loop
        from scion.spec import JobRequest, JobSpec

        request = JobRequest.model_validate({
            "space": {"type": "nb201"}, "strategy": {"type": "evolution"},
            "evaluator": {"type": "train", "dataset": "digits", "epochs": 1},
            "warm_start": [["skip_connect"] * 6],
        })
        JobSpec.of(request)
        api.main.create_app()
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print("torch modules:", loaded)
        sys.exit(1 if loaded else 0)
    """)
    env = {"PYTHONPATH": str(REPO), "SCION_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
