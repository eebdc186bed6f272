"""Errors shared by every layer that talks to a user (the CLI and its subcommands, benchmark
engines); kept apart, importing nothing, so that no import runs back up to samic.cli."""


class UserError(Exception):
    """A mistake of the user's (bad argument, missing file): printed as one line, exit 2."""
