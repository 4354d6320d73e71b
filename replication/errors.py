"""The one exception type for bad user input.

Anything raising :class:`UserError` ends, in the CLI, as one line on stderr and exit code 2 (no
traceback). The message must say what is wrong *and* what to do.
"""


class UserError(Exception):
    """Bad input from a user: unknown name, missing data file, malformed value, unwritable folder."""
