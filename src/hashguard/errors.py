"""One exception type for every problem a user can fix: bad input, bad configuration, bad files.

The command-line face turns a :class:`HashguardError` into a single line on stderr and a non-zero exit
status; library users catch it like any other exception.
"""

from __future__ import annotations


class HashguardError(Exception):
    """A problem with the user's input, configuration or files, described in one line."""


class DataError(HashguardError):
    """A dataset, list file or image that cannot be read as given."""


class ConfigError(HashguardError):
    """A configuration value that is missing, malformed or out of range."""


class CheckpointError(HashguardError):
    """A checkpoint that is missing, corrupt or belongs to another model."""
