"""Running one Slurm command: where it is, one ``subprocess.run`` with a timeout and no shell,
counted per command (``sbatch``, ``squeue``, ``scancel``, ``sinfo``), its failure as a
:class:`SlurmError` carrying Slurm's own words; a missing installation is :class:`SlurmMissing`
with a hint."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from corral.backends.slurm_errors import SlurmError, SlurmMissing, SlurmTimeout

__all__ = ["INSTALL_HINT", "Runner", "SlurmRunner", "command_error"]

Runner = Callable[..., "subprocess.CompletedProcess[str]"]

INSTALL_HINT = (
    "install the Slurm client commands (Debian/Ubuntu: apt-get install slurm-client; "
    "a local test cluster: scripts/slurm-up.sh) or put them on PATH"
)


class SlurmRunner:
    """Runs Slurm commands; counts the commands issued.

    ``bin_dir`` (or env ``CORRAL_SLURM_BIN``) overrides where the commands are looked up.
    ``runner`` replaces :func:`subprocess.run` (tests). ``timeout`` bounds each command
    (seconds).
    """

    def __init__(
        self,
        *,
        bin_dir: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        runner: Runner | None = None,
    ) -> None:
        if bin_dir is None:
            bin_dir = os.environ.get("CORRAL_SLURM_BIN") or None
        self.bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.timeout = timeout
        self._runner: Runner = runner if runner is not None else subprocess.run
        self.counts: collections.Counter[str] = collections.Counter()
        self._paths: dict[str, str] = {}

    # ------------------------------------------------------------------ plumbing

    def command_path(self, name: str) -> str:
        """Absolute path of a Slurm command; :class:`SlurmMissing` when not found."""
        cached = self._paths.get(name)
        if cached is not None:
            return cached
        if self.bin_dir is not None:
            candidate = self.bin_dir / name
            found = str(candidate) if os.access(candidate, os.X_OK) else None
        else:
            found = shutil.which(name)
        if found is None:
            where = f"in {self.bin_dir}" if self.bin_dir is not None else "on PATH"
            raise SlurmMissing(f"Slurm command '{name}' not found {where}: {INSTALL_HINT}")
        self._paths[name] = found
        return found

    def available(self) -> bool:
        """True when sbatch and squeue are installed (does not contact the controller)."""
        try:
            self.command_path("sbatch")
            self.command_path("squeue")
        except SlurmMissing:
            return False
        return True

    def call(
        self,
        name: str,
        args: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run Slurm command ``name`` with ``args``; its answer whatever its exit status."""
        argv = [self.command_path(name), *args]
        self.counts[name] += 1
        try:
            return self._runner(
                argv,
                input=input,
                capture_output=True,
                text=True,
                env=dict(env) if env is not None else None,
                timeout=self.timeout if timeout is None else timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            self._paths.pop(name, None)
            raise SlurmMissing(f"Slurm command '{name}' not found: {INSTALL_HINT}") from exc
        except subprocess.TimeoutExpired as exc:
            raise SlurmTimeout(
                f"{name} did not answer within {exc.timeout:g}s (is slurmctld running?)",
                argv=argv,
            ) from exc


def command_error(name: str, proc: subprocess.CompletedProcess[str]) -> SlurmError:
    """A failed command as a :class:`SlurmError` (Slurm's message, else the exit status)."""
    msg = (proc.stderr or "").strip() or (proc.stdout or "").strip()
    if not msg:
        msg = f"exit status {proc.returncode}"
    return SlurmError(
        f"{name} failed: {msg}",
        argv=proc.args if isinstance(proc.args, list) else (),
        returncode=proc.returncode,
        stderr=proc.stderr or "",
    )
