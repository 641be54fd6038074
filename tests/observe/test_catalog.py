"""The catalog's view of a damaged journal uses the words of `corral status --json`."""

from __future__ import annotations

import json
from pathlib import Path

from corral.journal.frame import scan_journal
from corral.observe.catalog import Catalog


def test_a_corrupt_journal_is_listed_as_corrupt_like_status_says(corral) -> None:  # type: ignore[no-untyped-def]
    for task_id in ("ok", "bad"):
        corral("simplerun", "--id", task_id, "--", "true", check=True)
    journal: Path = corral.root / "bad" / "journal"
    offsets = scan_journal(journal.read_bytes()).offsets
    damaged = bytearray(journal.read_bytes())
    damaged[offsets[2] + 1] ^= 0x10  # a length mid-file: corruption, never a torn tail
    journal.write_bytes(bytes(damaged))
    for name in ("status.json", "checkpoint"):  # what status reads instead of the journal
        (corral.root / "bad" / name).unlink(missing_ok=True)

    by_status = {v["id"]: v["state"] for v in json.loads(corral("status", "--json", check=True).stdout)}
    by_catalog = {v["id"]: v["state"] for v in Catalog(corral.root).views()}
    assert by_catalog == by_status == {"ok": "SUCCESS", "bad": "CORRUPT"}
    assert [v["id"] for v in Catalog(corral.root).views(state="CORRUPT")] == ["bad"]
