"""The one exception type users see: bad input, bad options, missing extras."""


class FastMLPError(Exception):
    """A problem the user can fix; the CLI prints its message on one line and exits non-zero."""
