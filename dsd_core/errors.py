"""The one exception type that front ends turn into a one-line message and a non-zero exit."""


class DsdError(Exception):
    """A user-facing problem (bad input, missing file, impossible setting); never a bug in dsd itself."""
