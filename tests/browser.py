"""Headless Chromium for the page tests: Debian's /usr/bin/chromium driven by Playwright.

The flags keep Chromium off the network (this machine's network is closed; without them it retries
connections at every start) and let it run as root in a sandbox-less container.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

# CDS_CHROMIUM names the browser (as for scripts/ensure-chromium.sh); else chromium on PATH, else Debian's
CHROMIUM = Path(os.environ.get("CDS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"needs headless Chromium at {CHROMIUM} (apt-get install -y chromium, or set CDS_CHROMIUM)",
)


def launch(playwright: Any) -> Any:
    """A headless browser from a sync_playwright() context."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
