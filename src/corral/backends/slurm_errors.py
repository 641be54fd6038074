"""What Slurm's commands raise: their own error text kept, a missing installation, no answer."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SlurmError", "SlurmMissing", "SlurmTimeout"]


class SlurmError(Exception):
    """A Slurm command failed. ``str(err)`` carries Slurm's own message."""

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


class SlurmMissing(SlurmError):
    """The Slurm client commands are not installed or not on PATH."""


class SlurmTimeout(SlurmError):
    """A Slurm command did not answer in time.

    For ``sbatch`` the outcome is unknown: the controller may have accepted the job. Callers
    that must not double-submit should look for the job by its unique name/comment.
    """
