"""GdagError and its subclasses, each carrying its documented exit status."""

from __future__ import annotations

# Exit statuses (DESIGN.md section 6).
EXIT_OK = 0
EXIT_NODE_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130


class GdagError(Exception):
    """A refusal the user can act on: printed as `gdag: error: ...`, never a traceback."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(GdagError):
    """The command line itself is wrong."""

    exit_code = EXIT_USAGE


class NotARepositoryError(GdagError):
    """No git repository where one was expected."""


class NoLogError(GdagError):
    """The log has no events yet."""


class DefinitionError(GdagError):
    """gdag.toml (or a decorated module) does not compile."""


class ValueRefusedError(GdagError):
    """A value does not fit its output's type."""


class UnknownError(GdagError):
    """An output, offset, node or session that does not exist."""


class SecretMissingError(GdagError):
    """A node declares a secret that is not in gdag's environment: it was not started."""


class StoreError(GdagError):
    """The git store is damaged or unreadable."""
