"""Size and restore cost of a 100,000-job ensemble's checkpoint: the job table raw (checkpoint
version 1) beside compressed (version 3: as version 2, and the Opened record named, not copied),
in one run.

    PYTHONPATH=src python bench/checkpoint_size.py

The ensemble is bench/readers.py's (every job succeeded, params a Range); the figures are the
checkpoint's payload in bytes and the CPU time of decoding and restoring it (median of 15).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readers

from corral.core.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint, restore
from corral.core.records import Opened, decode
from corral.journal import read_journal
from corral.supervisor import checkpoints
from corral.supervisor.folding import supervision_for
from corral.supervisor.layout import Layout


def _raw(ckpt: Checkpoint, opened: Opened) -> Checkpoint:
    """The same checkpoint as version 1 wrote it: the arrays' bytes uncompressed, no totals,
    the Opened record copied."""
    import zlib

    return msgspec.structs.replace(
        ckpt,
        version=1,
        opened=opened,
        opened_crc=0,
        states=zlib.decompress(ckpt.states),
        attempts=zlib.decompress(ckpt.attempts),
        exit_codes=zlib.decompress(ckpt.exit_codes),
        run_totals=[],
    )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="corral-ckpt-"))
    readers.ensemble(root, "e", 100_000, 100_000, 0)
    data = (root / "e" / "checkpoint").read_bytes()
    payload = data[checkpoints.HEADER_SIZE :]
    ckpt = decode_checkpoint(payload)
    opened = decode(read_journal(root / "e" / "journal").payloads[0])
    assert isinstance(opened, Opened)
    raw = encode_checkpoint(_raw(ckpt, opened))
    layout = Layout(root, "e")

    def restore_cpu(blob: bytes) -> float:
        times = []
        for _ in range(15):
            sup, _jobs = supervision_for(opened, layout, False)
            start = time.process_time()
            restore(sup, decode_checkpoint(blob), opened)
            times.append(time.process_time() - start)
        return statistics.median(times)

    print("checkpoint of a finished 100,000-job ensemble:")
    print(
        f"  payload       version 1 (raw table) {len(raw):>8} B   version 3 {len(payload):>6} B"
        f"   x {len(raw) / len(payload):5.0f} smaller"
    )
    print(
        f"  decode+restore cpu      {restore_cpu(raw) * 1000:8.2f} ms            "
        f"{restore_cpu(payload) * 1000:6.2f} ms"
    )


if __name__ == "__main__":
    main()
