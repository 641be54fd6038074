"""``squeue``: the fields asked for and their parsing (pending array ranges expanded per task)."""

from __future__ import annotations

from corral.backends.slurm_errors import SlurmError
from corral.backends.slurm_sbatch import expand_array_spec
from corral.backends.slurm_states import SlurmJobInfo, map_state

__all__ = ["SQUEUE_FORMAT", "only_wanted", "parse_exit_status", "parse_squeue", "parse_time_left"]


def parse_exit_status(value: str) -> tuple[int | None, int | None]:
    """Parse Slurm's exit information into ``(exit_code, signal)``.

    Accepts ``"a:b"`` (scontrol/sacct: exit code, signal) and a raw wait status
    (squeue ``exit_code``: ``768`` -> exit 3, ``9`` -> signal 9). Unknown -> ``(None, None)``.
    """
    text = value.strip()
    if not text or text.upper() in {"N/A", "(NULL)"}:
        return None, None
    if ":" in text:
        a, _, b = text.partition(":")
        try:
            return int(a), int(b)
        except ValueError:
            return None, None
    try:
        status = int(text)
    except ValueError:
        return None, None
    if status < 0:
        return None, None
    if status & 0x7F:
        return None, status & 0x7F
    return (status >> 8) & 0xFF, 0


# squeue -O fields, in order; every field is followed by the separator. Name goes last so a
# name containing the separator cannot shift the other fields.
_SEP = "|"
_SQUEUE_FIELDS = (
    "JobArrayID",
    "JobID",
    "ArrayJobID",
    "ArrayTaskID",
    "State",
    "Reason",
    "exit_code",
    "NodeList",
    "Name",
)
SQUEUE_FORMAT = ",".join(f"{f}:{_SEP}" for f in _SQUEUE_FIELDS)


def _na(value: str) -> str | None:
    v = value.strip()
    return None if v in {"", "N/A", "(null)", "4294967294"} else v


def _expand_into(out: dict[str, SlurmJobInfo], base: SlurmJobInfo, array_job_id: str, task_spec: str) -> None:
    """Add one entry per task of a pending range (``task_spec`` like ``"2-19%4"``)."""
    for idx in expand_array_spec(task_spec):
        jid = f"{array_job_id}_{idx}"
        out[jid] = SlurmJobInfo(
            job_id=jid,
            state=base.state,
            raw_state=base.raw_state,
            reason=base.reason,
            raw_job_id=base.raw_job_id,
            array_job_id=array_job_id,
            array_task_id=idx,
            exit_code=base.exit_code,
            signal=base.signal,
            nodes=base.nodes,
            name=base.name,
            details=base.details,
        )


def _task_index(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def parse_squeue(text: str) -> dict[str, SlurmJobInfo]:
    """Parse the output of ``squeue --noheader -O <SQUEUE_FORMAT>``.

    Returns display id -> info; pending array ranges are expanded per task.
    """
    out: dict[str, SlurmJobInfo] = {}
    nfields = len(_SQUEUE_FIELDS)
    for line in text.splitlines():
        if not line.strip():
            continue
        body = line[:-1] if line.endswith(_SEP) else line
        parts = body.split(_SEP, nfields - 1)
        if len(parts) != nfields:
            raise SlurmError(f"unexpected squeue output line: {line!r}")
        display, raw_id, arr_id, task_id, state, reason, exit_s, nodes, name = (p.strip() for p in parts)
        code, sig = parse_exit_status(exit_s)
        array_job_id = _na(arr_id)
        if array_job_id == _na(raw_id) and _na(task_id) is None:
            array_job_id = None  # plain job: squeue reports ArrayJobID = JobID
        info = SlurmJobInfo(
            job_id=display,
            state=map_state(state),
            raw_state=state,
            reason=reason,
            raw_job_id=raw_id,
            array_job_id=array_job_id,
            array_task_id=_task_index(_na(task_id)),
            exit_code=code,
            signal=sig,
            nodes=nodes,
            name=name,
        )
        if "[" in display and array_job_id is not None:
            _expand_into(out, info, array_job_id, display[display.index("[") :])
        else:
            out[display] = info
    return out


def only_wanted(result: dict[str, SlurmJobInfo], wanted: set[str]) -> dict[str, SlurmJobInfo]:
    """The entries of ``result`` asked for by display id, Slurm's id or array id."""
    return {
        k: v
        for k, v in result.items()
        if k in wanted or v.raw_job_id in wanted or (v.array_job_id is not None and v.array_job_id in wanted)
    }


def parse_time_left(text: str) -> float | None:
    """squeue's ``%L`` (``[D-]HH:MM:SS``, ``MM:SS``, ``SS``) -> seconds; None for
    ``UNLIMITED``, ``NOT_SET``, ``INVALID`` or anything else."""
    days, _, clock = text.strip().rpartition("-")
    parts = clock.split(":")
    digits = [*parts, days] if _ else parts
    if len(parts) > 3 or not all(p.isascii() and p.isdigit() for p in digits):
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return float(seconds + int(days or 0) * 86400)
