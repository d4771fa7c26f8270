"""Errors the CLI reports as one line with exit code 2 (kept import-light, so ``bench list`` stays fast)."""

from datasets.errors import UsageError


class TrackingError(Exception):
    """The tracking store cannot be used (unreachable, not writable, or busy)."""


class SuiteError(UsageError):
    """A suite file that cannot be used; the message says which file, where, and what is valid."""
