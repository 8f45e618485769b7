"""External tools the tests drive (promtool, Alertmanager, hadolint, kubectl): found or required."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def find_tool(name: str) -> str | None:
    """The venv's bin directory first (pip-installed tools), then PATH, then /usr/bin."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    usr = Path("/usr/bin") / name
    return str(usr) if usr.is_file() else None


def require_tool(name: str, how: str) -> str:
    """The tool's path; a skip on a developer's machine without it, a failure in CI."""
    path = find_tool(name)
    if path is None:
        message = f"{name} not found ({how})"
        if os.environ.get("CI"):
            pytest.fail(message + "; it is required when CI is set")
        pytest.skip(message)
    return path
