"""The base of every error a user fixes (config, input files, weights, devices): the command-line
entry points end such an error with its message and exit status 2 (`kvq.cli.run_main`); anything
else is a bug and ends with a traceback (exit 1)."""
from __future__ import annotations


class UserError(Exception):
    """An error in what the user gave (a file, a flag, a config value), with a message naming it."""


class ConfigError(UserError, ValueError):
    """A config file (or override, or command-line value) that does not fit the schema."""
