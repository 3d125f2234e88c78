"""A submission sent twice makes one job: ``POST /v1/jobs`` with an ``Idempotency-Key`` answers a
repeat (same key, same owner, same request) with the job the first created, refuses the key with
another request, holds when the repeats race, and the SDK sends a key and retries with it when an
answer is lost. The real app on a fresh SQLite file and a fresh PostgreSQL database, and served by
uvicorn behind a proxy that drops one answer."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from client.sdk import ScionClient
from scion.settings import get_settings
from tests.api.test_api import train_spec
from tests.api.test_auth import bearer, make_token

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def client(settings_env) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def post(client: TestClient, spec: dict, key: str | None, **headers: str):
    return client.post("/v1/jobs", json=spec, headers=({"Idempotency-Key": key} if key else {}) | headers)


def test_the_same_key_and_request_answer_the_first_job(client: TestClient) -> None:
    first = post(client, train_spec(), "key-1")
    again = post(client, {"evaluator": train_spec()["evaluator"], **train_spec()}, "key-1")  # same, keys reordered
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["spec"] == first.json()["spec"]
    other = post(client, train_spec(), "key-2")
    unkeyed = [post(client, train_spec(), None) for _ in range(2)]
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert [r.status_code for r in unkeyed] == [201, 201]  # no key: a job each time, as before
    assert client.get("/v1/jobs").json()["total"] == 4


def test_the_same_key_with_another_request_is_refused_naming_the_header(client: TestClient) -> None:
    first = post(client, train_spec(), "key-1").json()
    r = post(client, train_spec(name="another"), "key-1")
    assert r.status_code == 409
    assert "Idempotency-Key" in r.json()["detail"] and f"job {first['id']}" in r.json()["detail"]
    for bad in (b"has space", b"x" * 201, "é".encode()):
        r = client.post("/v1/jobs", json=train_spec(), headers={"Idempotency-Key": bad})
        assert r.status_code == 422 and "Idempotency-Key" in r.json()["detail"], (bad, r.text)
    assert client.get("/v1/jobs").json()["total"] == 1


def test_keys_are_each_owners_own(settings_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCION_AUTH", "on")
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        alice, bob = make_token("alice"), make_token("bob")
        a = post(client, train_spec(), "shared", **bearer(alice))
        b = post(client, train_spec(), "shared", **bearer(bob))
        assert (a.status_code, b.status_code) == (201, 201) and a.json()["id"] != b.json()["id"]
        assert post(client, train_spec(), "shared", **bearer(alice)).json()["id"] == a.json()["id"]
    get_settings.cache_clear()


def test_racing_repeats_make_one_job(client: TestClient) -> None:
    start = threading.Barrier(8)

    def submit(_: int):
        start.wait()
        return post(client, train_spec(), "raced")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(submit, range(8)))
    assert sorted(r.status_code for r in answers) == [200] * 7 + [201], [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert client.get("/v1/jobs").json()["total"] == 1


@contextmanager
def first_answer_lost(upstream: str) -> Iterator[str]:
    """A TCP proxy to ``upstream``: the first connection's request reaches the server, whose answer
    is then dropped with the connection (as a network may); later connections pass both ways."""
    host, port = upstream.removeprefix("http://").split(":")
    listener = socket.create_server(("127.0.0.1", 0))
    connections = 0

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with source, sink:
            while data := source.recv(65536):
                sink.sendall(data)

    def serve() -> None:
        nonlocal connections
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed
                return
            connections += 1
            server = socket.create_connection((host, int(port)))
            if connections > 1:
                threading.Thread(target=pipe, args=(client, server), daemon=True).start()
                threading.Thread(target=pipe, args=(server, client), daemon=True).start()
                continue
            threading.Thread(target=pipe, args=(client, server), daemon=True).start()
            with server:
                server.recv(65536)  # the answer starts: the job is committed (before any byte is sent)
            client.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_the_sdk_retries_a_lost_answer_with_the_same_key(live_server: str) -> None:
    with first_answer_lost(live_server) as url, ScionClient(url) as sdk:
        job = sdk.submit(train_spec())
        listed = sdk.jobs()
    assert listed["total"] == 1 and listed["items"][0]["id"] == job["id"]  # one job, though sent twice
