"""Human units in specs: sizes ("10MB", "512KiB") and durations ("1:30:00", "2-00:00:00", "90s").

Sizes are binary whatever the spelling: K, KB and KiB all mean 1024 bytes, as in Slurm's
`--mem=1G` and supervisord's `logfile_maxbytes=50MB`; a plain integer is bytes.
Durations are seconds when plain numbers. The colon forms follow Slurm's `--time`
(M:S, H:M:S, D-H, D-H:M, D-H:M:S) and suffixes s/m/h/d may be combined ("1h30m").
Slurm reads a bare number as minutes; corral does not: a bare number is always seconds.
"""

from __future__ import annotations

import math
import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}

_SUFFIXED = re.compile(r"^(?:(\d+(?:\.\d+)?)\s*([smhd])\s*)+$", re.IGNORECASE)
_SUFFIX_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SLURM = re.compile(r"^(?:(\d+)-)?(\d+(?:\.\d+)?)(?::(\d+(?:\.\d+)?))?(?::(\d+(?:\.\d+)?))?$")


def parse_size(text: str) -> int:
    """Bytes in `text` ("10MB", "1.5G", "512KiB", "4096"); ValueError if it is not a size."""
    m = _SIZE.match(text)
    if not m or ("i" in m.group(3).lower() and not m.group(2)):
        raise ValueError(text)
    value: float = float(m.group(1)) * float(1024 ** _POWER[m.group(2).lower()])
    return round(value)


def parse_duration(text: str) -> float:
    """Seconds in `text` ("90", "90s", "5m", "1h30m", "1:30:00", "2-00:00:00"); else ValueError."""
    s = text.strip()
    if not s:
        raise ValueError(text)
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    if _SUFFIXED.match(s):
        return float(sum(float(n) * _SECONDS[u.lower()] for n, u in _SUFFIX_PART.findall(s)))
    m = _SLURM.match(s)
    if not m:
        raise ValueError(text)
    days, first, second, third = m.groups()
    if days is not None:
        # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = float(first), float(second or 0), float(third or 0)
        return int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    if third is not None:  # H:M:S
        return float(first) * 3600 + float(second or 0) * 60 + float(third)
    if second is not None:  # M:S
        return float(first) * 60 + float(second)
    raise ValueError(text)  # a bare number was handled above
