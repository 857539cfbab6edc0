"""The base of every error a user fixes (config, input files, weights, devices): the command-line
entry points end such an error with its message and exit status 2 (`kvq.cli.run_main`); anything
else is a bug and ends with a traceback (exit 1)."""
from __future__ import annotations


class UserError(Exception):
    """An error in what the user gave (a file, a flag, a config value), with a message naming it."""


class ConfigError(UserError, ValueError):
    """A config file (or override, or command-line value) that does not fit the schema."""


class InputFileError(UserError, OSError):
    """An input file that cannot be read as given: missing, or a folder where a file is expected."""


class TextEncodingError(UserError, ValueError):
    """A text file in an encoding other than UTF-8 (with or without BOM) or UTF-16 with BOM; the
    message names the file, the line of the first undecodable byte and the encodings tried."""


class OutputPathError(UserError, OSError):
    """An output path refused before any work: a folder where a file is expected (or the reverse),
    a parent that is a file, a folder that is not writable, or the same file as an input."""


class DiskFullError(UserError, OSError):
    """No space left on device while writing an output (the partial temporary file is removed)."""
