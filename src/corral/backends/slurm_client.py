"""Slurm's commands as calls: ``sbatch``, ``--test-only``, ``squeue``, ``scancel``, ``sinfo``,
``srun`` argv. It knows how to *talk* to Slurm; it decides nothing. The Slurm backend (and
the slurm-steps backend inside an allocation) build on it.

* Every call is one command run by :class:`~corral.backends.slurm_runner.SlurmRunner`
  (explicit timeout, no shell, counted per kind in ``counts`` for benchmarks).
* :meth:`SlurmClient.squeue` answers for *all* tracked jobs with exactly one ``squeue`` call,
  whatever their number (when the ``--jobs`` list would be too long for one argv string, it
  asks for every job and filters locally: still one call). Pending array ranges such as
  ``123_[5-99%4]`` are expanded to one entry per task.

The request and its argv are in ``slurm_sbatch``, the parsing of squeue in ``slurm_squeue``,
the states in ``slurm_states``, the errors in ``slurm_errors``. Querying with an array's base
id (``"123"``) returns all of its tasks.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence

from corral.backends.slurm_errors import SlurmError
from corral.backends.slurm_runner import SlurmRunner, command_error
from corral.backends.slurm_sbatch import SbatchRequest, format_memory, parse_sbatch_output, sbatch_argv
from corral.backends.slurm_squeue import SQUEUE_FORMAT, only_wanted, parse_squeue, parse_time_left
from corral.backends.slurm_states import SlurmJobInfo

__all__ = ["SlurmClient", "in_allocation"]


def in_allocation(environ: Mapping[str, str] | None = None) -> str | None:
    """The id of the Slurm allocation we run in (``SLURM_JOB_ID``), or None."""
    env = os.environ if environ is None else environ
    return env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or None


_BENIGN_SCANCEL = (
    "Invalid job id specified",
    "Job/step already completing or completed",
    "already completing or completed",
)

# one argv string is limited to 128 KiB on Linux (MAX_ARG_STRLEN); the whole argv to ~2 MiB
_MAX_JOBS_ARG = 100_000
_MAX_ARGV_CHARS = 500_000


class SlurmClient(SlurmRunner):
    """Runs Slurm commands and parses their answers; counts the commands issued.

    ``bin_dir`` (or env ``CORRAL_SLURM_BIN``) overrides where the commands are looked up.
    ``runner`` replaces :func:`subprocess.run` (tests). ``timeout`` bounds each command
    (seconds).
    """

    # ------------------------------------------------------------------ sbatch

    def sbatch_argv(self, req: SbatchRequest) -> list[str]:
        """The arguments (after the ``sbatch`` command itself) for ``req``."""
        return sbatch_argv(req)

    def sbatch_test_only(self, req: SbatchRequest) -> subprocess.CompletedProcess[str]:
        """``sbatch --test-only``: would the controller accept ``req``? Nothing is submitted;
        the caller reads the answer (exit status, Slurm's own words on stderr)."""
        return self.call("sbatch", ["--test-only", *self.sbatch_argv(req)], input=req.script)

    def sbatch(self, req: SbatchRequest) -> str:
        """Submit; return the job id (the array id for an array).

        A refused submission raises :class:`SlurmError` with Slurm's message; nothing else
        is done. A timeout raises :class:`SlurmTimeout` (outcome unknown).
        """
        env: dict[str, str] | None = None
        if req.env:
            env = dict(os.environ)
            env.update(req.env)
        proc = self.call("sbatch", self.sbatch_argv(req), input=req.script, env=env)
        if proc.returncode != 0:
            raise command_error("sbatch", proc)
        return parse_sbatch_output(proc.stdout)

    # ------------------------------------------------------------------ squeue

    def squeue(self, job_ids: Iterable[str]) -> dict[str, SlurmJobInfo]:
        """State of the given jobs (array base ids give all their tasks) in ONE squeue call.

        Jobs slurmctld no longer knows (purged after MinJobAge) are simply absent.
        Empty input: no call, ``{}``.
        """
        wanted = sorted({str(j).strip() for j in job_ids if str(j).strip()})
        if not wanted:
            return {}
        joined = ",".join(wanted)
        args = ["--noheader", "--states=all", f"--Format={SQUEUE_FORMAT}"]
        filter_locally = len(joined) > _MAX_JOBS_ARG
        if not filter_locally:
            args.append(f"--jobs={joined}")
        proc = self.call("squeue", args)
        if proc.returncode != 0:
            if "Invalid job id" in (proc.stderr or ""):
                return {}
            raise command_error("squeue", proc)
        result = parse_squeue(proc.stdout)
        if filter_locally:
            result = only_wanted(result, set(wanted))
        return result

    def squeue_named(self, name: str) -> dict[str, SlurmJobInfo]:
        """Every job slurmctld knows by this job name (any state), in one squeue call.

        How a launcher finds the jobs it submitted but could not record (a crash right after
        sbatch, or an sbatch that timed out).
        """
        args = ["--noheader", "--states=all", f"--name={name}", f"--Format={SQUEUE_FORMAT}"]
        proc = self.call("squeue", args)
        if proc.returncode != 0:
            raise command_error("squeue", proc)
        return parse_squeue(proc.stdout)

    def time_left(self, job_ids: Iterable[str]) -> dict[str, float]:
        """Seconds left of each running job's time limit (its allocation's real end, whatever
        its submitted limit was: a changed limit counts), in one squeue call. Jobs without a
        limit, pending or unknown to Slurm are absent. SlurmError: squeue failed."""
        wanted = sorted({str(j).strip() for j in job_ids if str(j).strip()})
        if not wanted:
            return {}
        args = ["--noheader", "--states=running", f"--jobs={','.join(wanted)}", "--format=%i|%L"]
        proc = self.call("squeue", args)
        if proc.returncode != 0:
            if "Invalid job id" in (proc.stderr or ""):
                return {}
            raise command_error("squeue", proc)
        out: dict[str, float] = {}
        for line in proc.stdout.splitlines():
            ident, _, left = line.partition("|")
            seconds = parse_time_left(left)
            if ident.strip() and seconds is not None:
                out[ident.strip()] = seconds
        return out

    # ------------------------------------------------------------------ scancel

    def scancel(self, job_ids: Iterable[str], signal: str | int | None = None, *, full: bool = True) -> None:
        """Cancel (or, with ``signal``, signal) many jobs in one ``scancel`` call (chunked
        only past a safe argv length). Jobs already ended or purged are not an error.

        With a signal and ``full`` (default), the batch script is signalled too
        (``scancel --full``), not only the job's steps.
        """
        ids = sorted({str(j).strip() for j in job_ids if str(j).strip()})
        if not ids:
            return
        opts: list[str] = []
        if signal is not None:
            opts.append(f"--signal={signal}")
            if full:
                opts.append("--full")
        errors: list[str] = []
        for chunk in _chunks(ids, _MAX_ARGV_CHARS):
            proc = self.call("scancel", [*opts, *chunk])
            for line in (proc.stderr or "").splitlines():
                text = line.strip()
                if text and not any(b in text for b in _BENIGN_SCANCEL):
                    errors.append(text)
            if proc.returncode != 0 and not errors and not (proc.stderr or "").strip():
                errors.append(f"exit status {proc.returncode}")
        if errors:
            raise SlurmError("scancel failed: " + "; ".join(errors))

    # ------------------------------------------------------------------ misc

    def sinfo_ok(self, timeout: float = 5.0) -> bool:
        """True when the controller answers ``sinfo`` and a partition is up."""
        try:
            proc = self.call("sinfo", ["--noheader", "--format=%a"], timeout=timeout)
        except SlurmError:
            return False
        return proc.returncode == 0 and "up" in proc.stdout.split()

    def srun_step_argv(
        self,
        argv: Sequence[str],
        *,
        cpus: int = 1,
        memory_bytes: int | None = None,
        name: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> list[str]:
        """argv that starts ``argv`` as an exclusive job step inside the current allocation
        (slurm-steps backend). Building it issues no command (not counted)."""
        if not argv:
            raise ValueError("srun_step_argv needs a command")
        if cpus < 1:
            raise ValueError(f"cpus must be >= 1, got {cpus}")
        out = [
            self.command_path("srun"),
            "--exclusive",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={cpus}",
        ]
        if memory_bytes is not None:
            out.append(f"--mem={format_memory(memory_bytes)}")
        if name is not None:
            out.append(f"--job-name={name}")
        out.extend(extra_args)
        out.append("--")
        out.extend(argv)
        return out


def _chunks(items: Sequence[str], max_chars: int) -> Iterable[list[str]]:
    """Split ids so each comma-joined chunk stays under ``max_chars``."""
    chunk: list[str] = []
    size = 0
    for item in items:
        if chunk and size + len(item) + 1 > max_chars:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        yield chunk
