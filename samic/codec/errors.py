"""Exceptions of the codec (kept in their own module so that every part can raise them)."""


class FormatError(ValueError):
    """A .samic file is corrupt, truncated, or was made by another model or format version."""
