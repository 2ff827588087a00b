"""``/docs``: the OpenAPI UI with its assets served by this service (no CDN), so it works offline."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
router = APIRouter(include_in_schema=False)


def assets() -> StaticFiles:
    """The Swagger UI 5 files shipped by the ``fastapi-offline`` package (its static folder only)."""
    return StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static")


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """The interactive API documentation (Swagger UI), from local assets."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="HER2 CDS Hooks service",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
    )
