"""The journal: a framed, checksummed, append-only log of opaque payloads.

One writer per journal (an exclusive lock on a sibling ``.lock`` file) appends with group
commit; any number of readers read or follow it without locking. Opening for append repairs a
torn tail and refuses mid-file corruption. Callers encode typed records into the payloads.
"""

from .errors import (
    JournalCorrupt,
    JournalError,
    JournalLocked,
    JournalReadOnly,
    JournalUnreadable,
    RecordRejected,
)
from .frame import HEADER, MAX_FRAME, ScanResult, Stop, encode_frame, scan, scan_journal
from .reader import JournalContents, RawFrame, first_payload, follow, iter_raw, read_journal
from .writer import JournalWriter, RepairInfo, lock_holder, lock_taken, open_for_append

__all__ = [
    "HEADER",
    "MAX_FRAME",
    "JournalContents",
    "JournalCorrupt",
    "JournalError",
    "JournalLocked",
    "JournalReadOnly",
    "JournalUnreadable",
    "JournalWriter",
    "RawFrame",
    "RecordRejected",
    "RepairInfo",
    "ScanResult",
    "Stop",
    "encode_frame",
    "first_payload",
    "follow",
    "iter_raw",
    "lock_holder",
    "lock_taken",
    "open_for_append",
    "read_journal",
    "scan",
    "scan_journal",
]
