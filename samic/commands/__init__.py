"""Subcommands of the samic CLI, one module each (see samic.cli)."""
