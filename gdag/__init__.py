"""gdag: a git-native reactive dataflow engine for the command line."""

__version__ = "0.1.0"
