"""The Python SDK: a thin httpx client over the REST API, used by the CLI and by users' code."""
from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from client.spec_file import read_spec

TERMINAL = ("completed", "failed", "cancelled")
SUBMIT_RETRY_S = (0.5, 2.0)  # waits before a submission that got no answer is sent again


class ScionError(Exception):
    """The API refused a request; ``detail`` is its explanation."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code, self.detail = status_code, detail


def _error(response: httpx.Response) -> ScionError:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return ScionError(response.status_code, detail if isinstance(detail, str) else str(detail))


class ScionClient:
    def __init__(self, base_url: str | None = None, *, token: str | None = None, timeout: float = 30.0) -> None:
        """``base_url``: the API, by default SCION_API_URL as the CLI reads it; ``token``: the API
        token to send (Bearer), by default SCION_TOKEN (or SCION_TOKEN_FILE)."""
        from scion.settings import get_settings

        base_url = base_url or get_settings().api_url
        if not base_url:
            raise ValueError("no Scion API to talk to: pass its URL or set SCION_API_URL")
        if token is None:
            token = get_settings().token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ScionClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, method: str, path: str, *, retry_s: tuple[float, ...] = (), **kwargs: Any) -> Any:
        """``retry_s``: the waits before sending again a request that got no answer (the connection
        failed or timed out), for a request the server answers the same way twice."""
        for wait in (*retry_s, None):
            try:
                response = self._http.request(method, path, **kwargs)
                break
            except httpx.TransportError as exc:
                if wait is None:
                    raise ScionError(0, f"cannot reach the Scion API at {self._http.base_url}: {exc}") from None
                time.sleep(wait)
        if response.status_code >= 400:
            raise _error(response)
        return self._decoded(response.json())

    def _decoded(self, body: Any) -> Any:
        """A JSON answer as this client hands it on (a subclass may clean it for its output)."""
        return body

    def submit(self, spec: dict[str, Any] | str | Path) -> dict[str, Any]:
        """Submit a job: its spec as a dict, or the path of a YAML or JSON file holding it
        (``client.spec_file.SpecFileError`` names the place of a syntax error). Sent with a new
        Idempotency-Key, and sent again with the same key when no answer came (``SUBMIT_RETRY_S``):
        the server answers a repeat with the job the first one created, so a retry never makes two."""
        return self._call("POST", "/v1/jobs", json=spec if isinstance(spec, dict) else read_spec(spec),
                          headers={"Idempotency-Key": str(uuid.uuid4())}, retry_s=SUBMIT_RETRY_S)

    def jobs(self, *, status: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        params = {"limit": limit, "offset": offset} | ({"status": status} if status else {})
        return self._call("GET", "/v1/jobs", params=params)

    def job(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")

    def trials(
        self, job_id: int, *, status: str | None = None, sort: str = "number", order: str | None = None,
        limit: int = 50, offset: int = 0, phase: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"sort": sort, "limit": limit, "offset": offset}
        params |= {k: v for k, v in (("status", status), ("order", order), ("phase", phase)) if v}
        return self._call("GET", f"/v1/jobs/{job_id}/trials", params=params)

    def trial(self, job_id: int, number: int) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}/trials/{number}")

    def architecture(self, job_id: int, number: int) -> dict[str, Any]:
        """A trial's architecture as JSON (space config, arch, key, input shape): any trial, any evaluator."""
        return self._call("GET", f"/v1/jobs/{job_id}/trials/{number}/architecture")

    def download_model(self, job_id: int, number: int, format: str = "onnx",  # noqa: A002
                       path: str | os.PathLike[str] | None = None, *, timeout: float = 600.0) -> Path:
        """Save a completed trial's trained network as ``format`` (onnx, torchscript or state_dict)
        to ``path``: a file, or a directory (default: the current one) to hold it under the
        server's file name. Written atomically; returns the file's path. The first download of a
        format has a worker export it, which takes seconds for a small network: while the server
        answers 202 this asks again after its Retry-After, for up to ``timeout`` seconds in all."""
        url = f"/v1/jobs/{job_id}/trials/{number}/model"
        deadline = time.monotonic() + timeout
        try:
            while True:
                with self._http.stream("GET", url, params={"format": format},
                                       timeout=max(1.0, deadline - time.monotonic())) as response:
                    if response.status_code == 202:
                        response.read()
                        wait = float(response.headers.get("retry-after", "1"))
                        if time.monotonic() + wait > deadline:
                            raise ScionError(202, f"{_error(response).detail} (still not ready after {timeout:g} s)")
                        time.sleep(wait)
                        continue
                    if response.status_code >= 400:
                        response.read()
                        raise _error(response)
                    return self._save(response, path, f"scion-job{job_id}-trial{number}.{format}")
        except httpx.TransportError as exc:
            raise ScionError(0, f"cannot reach the Scion API at {self._http.base_url}: {exc}") from None

    @staticmethod
    def _save(response: httpx.Response, path: str | os.PathLike[str] | None, fallback_name: str) -> Path:
        """Stream the response's body to ``path`` (a file, or a directory for the server's file name)."""
        target = Path(path) if path is not None else Path.cwd()
        if target.is_dir():
            match = re.search(r'filename="?([^";]+)"?', response.headers.get("content-disposition", ""))
            target = target / (Path(match.group(1)).name if match else fallback_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def best(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}/best")

    def pareto(self, job_id: int) -> list[dict[str, Any]]:
        """The non-dominated completed trials over the job's objectives, best primary first."""
        return self._call("GET", f"/v1/jobs/{job_id}/pareto")

    def events(self, job_id: int, *, page_size: int = 100) -> list[dict[str, Any]]:
        """All the job's events, oldest first, read a page at a time."""
        events: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", f"/v1/jobs/{job_id}/events", params={"limit": page_size, "offset": len(events)})
            events += page
            if len(page) < page_size:
                return events

    def catalogue(self, kind: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/{kind}")

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def wait(
        self, job_id: int, *, poll_s: float = 0.5, timeout_s: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job ends; ``on_update`` sees every snapshot."""
        deadline = time.monotonic() + timeout_s if timeout_s else None
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job["status"] in TERMINAL:
                return job
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s} s")
            time.sleep(poll_s)
