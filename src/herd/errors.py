"""The two kinds of failure herd reports.

`UserError` is the user's mistake (a bad config key, a broken seed line, a missing API key): the CLI prints its
message as one line and exits with status 2, with no traceback unless `--debug`. Anything else is herd's or the
world's failure and exits with status 1.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message names the file and line, or the key, that is wrong."""

    exit_code = 2


class TeacherError(Exception):
    """One teacher call failed; `retryable` says whether another attempt may succeed."""

    def __init__(self, reason: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
