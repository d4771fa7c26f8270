"""The project's user-facing errors, and the one way to fold an error into one line.

Each of these means "the user can fix this": a CLI prints it as one line and exits 2. Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

DATA_HINT = "point --data-dir or COALITION_BENCH_DATA at a folder that holds it"
DOWNLOAD_HINT = "or pass --download when online"


def one_line(message: object, limit: int | None = None) -> str:
    """``message`` (an exception or a text) with its whitespace folded to single spaces, cut to ``limit`` characters
    (marked with "...") when one is given."""
    text = " ".join(str(message).split())
    if limit is not None and len(text) > limit:
        return text[:limit] + "..."
    return text


class UsageError(ValueError):
    """A value a user gave (a flag, a suite entry, a method's or a model's parameter) that is not valid.

    A ``ValueError``, so code that validates values may catch it as one; the CLI prints it as one line, exit 2.
    """


class DataError(Exception):
    """A data file is missing, corrupt or unparsable.

    The message is always one line that says which file, where it was looked for, and how to fix it, so a CLI
    can print it instead of a traceback. Build messages with :meth:`missing` and :meth:`corrupt` to keep them
    uniform.

    Args:
        message: the one-line message; newlines are folded into spaces.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    @classmethod
    def missing(
        cls, dataset: str, filename: str, looked_in: Iterable[str | Path], *, can_download: bool = False
    ) -> DataError:
        """A file that was not found in any of the folders searched.

        Args:
            dataset: the dataset's display name, e.g. ``"MNIST"``.
            filename: the file that is missing.
            looked_in: the folders searched, in order.
            can_download: whether ``--download`` would fetch it.

        Returns:
            The error, ready to raise.
        """
        folders = ", ".join(str(folder) for folder in looked_in)
        fix = f"{DATA_HINT}, {DOWNLOAD_HINT}" if can_download else DATA_HINT
        return cls(f"{dataset}: {filename} not found (looked in {folders}); {fix}")

    @classmethod
    def corrupt(cls, dataset: str, path: str | Path, problem: str, *, fix: str | None = None) -> DataError:
        """A file that exists but is damaged (checksum mismatch, unparsable content).

        Args:
            dataset: the dataset's display name.
            path: the damaged file.
            problem: what is wrong with it, e.g. ``"md5 0123... does not match the expected abcd..."``.
            fix: how to fix it; defaults to replacing the file with a fresh copy.

        Returns:
            The error, ready to raise.
        """
        fix = fix or "replace it with a fresh copy of the original file"
        return cls(f"{dataset}: {path} is corrupt ({problem}); {fix}")

    @classmethod
    def unreadable(cls, dataset: str, path: str | Path, error: OSError, *, fix: str | None = None) -> DataError:
        """A file that exists but cannot be read (no permission, an I/O error of the disk, not a regular file).

        Args:
            dataset: the dataset's display name.
            path: the file.
            error: what the OS said, e.g. ``[Errno 5] Input/output error``.
            fix: how to fix it; defaults to making it readable or replacing it.

        Returns:
            The error, ready to raise.
        """
        reason = f"[Errno {error.errno}] {error.strerror}" if error.errno and error.strerror else one_line(error)
        fix = fix or "check that it is a readable file (permissions, the disk), or replace it with a fresh copy"
        return cls(f"{dataset}: cannot read {path} ({reason}); {fix}")
