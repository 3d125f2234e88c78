"""GET /docs and /redoc work without internet: their scripts and styles come from this server
(the fastapi-offline package), and a browser with no network beyond this machine renders them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.api.test_web import _render

pytestmark = pytest.mark.timeout(120)
ASSET = re.compile(r"""<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)\"""")


@pytest.mark.parametrize(("page", "kinds"), [("/docs", {"javascript", "css"}), ("/redoc", {"javascript"})])
def test_docs_pages_load_their_assets_from_this_server(page: str, kinds: set[str]) -> None:
    with TestClient(create_app()) as client:
        response = client.get(page)
        assert response.status_code == 200
        assets = ASSET.findall(response.text)
        assert all(url.startswith("/") and not url.startswith("//") for url in assets), assets
        assert "cdn" not in response.text.lower() and "fonts.googleapis" not in response.text
        served = set()
        for url in assets:
            asset = client.get(url)
            assert asset.status_code == 200, url
            served.add(asset.headers["content-type"].split(";")[0].split("/")[1])
            assert len(asset.content) > 1000 or url.endswith(".png"), url
    assert kinds <= served, served


def test_browser_renders_swagger_ui_and_redoc_without_network(live_server: str, tmp_path: Path,
                                                              chromium: Path) -> None:
    dom = _render(f"{live_server}/docs", tmp_path, chromium)
    assert 'class="swagger-ui"' in dom
    # Swagger UI read the schema and drew the operations, with the API's own summaries.
    assert 'data-path="/v1/jobs"' in dom and "opblock-summary-post" in dom
    assert "Submit a search job" in dom

    dom = _render(f"{live_server}/redoc", tmp_path, chromium)
    assert re.search(r"<h1[^>]*>Scion", dom), dom[-2000:]
    assert "Submit a search job" in dom
