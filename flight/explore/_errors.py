"""The error type of Explore: a request that cannot be answered, with its HTTP status and reason."""

from __future__ import annotations

__all__ = ["ExploreError"]


class ExploreError(Exception):
    """A bad parameter (400), an unknown object (404), a missing key (401) or a failed query.

    The message names what was wrong (``limit must be an integer from 1 to 500``), so it can be
    shown to the user as is.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
