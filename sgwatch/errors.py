"""Errors a user can act on. Each carries one line saying what, where and how to fix it.

The CLI turns these into that one line on stderr and a documented exit code; nothing below
the CLI prints or exits.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_USAGE = 2  # usage, config, baseline, snapshot, state or credential error
EXIT_INCOMPLETE = 3


class SgwatchError(Exception):
    """A problem with the user's input or environment, not a bug."""

    exit_code = EXIT_USAGE


class InputError(SgwatchError):
    """A file the user gave us is unreadable or invalid (config, baseline, snapshot, state)."""


class AuthError(SgwatchError):
    """The cloud refused our identity or permissions; retrying will not help."""
