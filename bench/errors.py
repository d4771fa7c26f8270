"""Errors the CLI reports as one line with exit code 2 (kept import-light, so ``bench list`` stays fast)."""


class TrackingError(Exception):
    """The tracking store cannot be used (unreachable, not writable, or busy)."""
