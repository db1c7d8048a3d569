"""`python -m gdag`: the same entry point as the `gdag` command."""

from gdag.main import entry

raise SystemExit(entry())
