"""Errors meant for people: the CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """A problem the user can fix (a bad flag, an unknown id): one line, exit status 2."""
