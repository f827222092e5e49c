"""The one exception type a user sees: the CLI turns it into one line and exit status 2."""


class InputError(ValueError):
    """Bad user input: unreadable file, mismatched shapes, NaN, wrong option values."""
