"""Errors a user can cause and fix.

``str(error)`` is one sentence that names the problem and the fix. The CLI prints it
without a traceback; Python callers can catch :class:`StoryReasoningError`.
"""

from __future__ import annotations


class StoryReasoningError(Exception):
    """A problem with the user's input or environment (bad path, unreadable image, server down)."""

    exit_code = 1


class UsageError(StoryReasoningError):
    """A wrong argument or a missing file: the command cannot start."""

    exit_code = 2
