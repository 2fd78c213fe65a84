"""The one error type the routes raise: an HTTP status and one sentence for the page."""

from __future__ import annotations

from ..errors import StoryReasoningError


class ApiError(StoryReasoningError):
    """A request the studio refuses: ``status`` is the HTTP status, ``str(error)`` the message.

    The page shows the message as it is, so it names the problem and the fix.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
