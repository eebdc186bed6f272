"""Writing output files so that a failure never leaves a partial or clobbered file."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _default_file_mode() -> int:
    umask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None], overwrite: bool = False) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it into place.

    Without ``overwrite`` an existing ``path`` raises FileExistsError, also when it appears
    while we write (the final step is a hard link, which never replaces). On any exception,
    KeyboardInterrupt included, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists (use --force to overwrite)")
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temp, _default_file_mode())  # mkstemp creates 0600; give the usual mode
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:
                raise FileExistsError(f"{path} exists (use --force to overwrite)") from None
            except OSError:  # a file system without hard links
                if path.exists():
                    raise FileExistsError(f"{path} exists (use --force to overwrite)") from None
                os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
