"""The one error type for bad input, and the cancellation signal used by jobs."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input from the user: an unreadable, corrupt or empty file, or a bad argument.

    The message always names the file (when there is one) and the problem, in words a user
    can act on. The CLI turns it into exit code 2 and one line on stderr; the GUI shows it in a
    dialog. Nothing is lost or modified when it is raised.
    """

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class Cancelled(Exception):
    """Raised inside a job when the user asked it to stop. Not an error."""

    def __init__(self, message: str = "cancelled by the user") -> None:
        super().__init__(message)
