"""The OpenAPI UI works offline: every asset comes from the service itself, and it renders in Chromium
with every request outside loopback blocked."""

from __future__ import annotations

import re

from tests.browser import launch, needs_chromium

from .conftest import Service


def test_docs_page_uses_only_local_assets(service: Service) -> None:
    page = service.client.get(f"{service.base}/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']?([^"' >]+)""", page.text) + re.findall(
        r"""url: ['"]([^'"]+)""", page.text
    )
    assert urls and all(u.startswith("/") for u in urls), urls
    for url in urls:
        assert service.client.get(f"{service.base}{url}").status_code == 200, url


@needs_chromium
def test_docs_page_renders_without_network(service: Service) -> None:
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()

        def guard(route: object) -> None:
            request = route.request  # type: ignore[attr-defined]
            if request.url.startswith(service.base):
                route.continue_()  # type: ignore[attr-defined]
            else:
                outside.append(request.url)
                route.abort()  # type: ignore[attr-defined]

        page.route("**/*", guard)
        page.goto(f"{service.base}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=20000)
        paths = page.eval_on_selector_all(
            ".opblock-summary-path", "nodes => nodes.map(n => n.getAttribute('data-path'))"
        )
        browser.close()
    assert "/cds-services/{service_id}/feedback" in paths
    assert outside == []
