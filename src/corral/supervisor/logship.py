"""The worker's side of streamed output (issue 14): ship what runs write, in chunks.

Runs write straight to their files, as everywhere in corral (so they outlive whoever reads
them); on a pilot worker with streamed output those files are node-local scratch, and the
shipper reads what was added since the last call and hands it over as chunks that carry their
offset in the run's log. The launcher appends them with `StreamLogWriter.append_at`, which
drops what it already has, so chunks sent again after a reconnect are harmless; after a
reconnect the worker rewinds each log to the size the launcher reports. Once a run has ended
and its log was read to the end and acknowledged, `forget` drops it (and may remove the file).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from corral.journal.streamlog import StreamKey

CHUNK = 64 * 1024  # bytes of one chunk at most (one wire message)


@dataclass(frozen=True, slots=True)
class Chunk:
    key: StreamKey
    offset: int  # where `data` starts in the run's log
    data: bytes


@dataclass(slots=True)
class _Watched:
    path: Path
    sent: int = 0  # bytes of the file handed over so far
    ended: bool = False  # the run has ended: the file grows no more


class LogShipper:
    def __init__(self, chunk: int = CHUNK) -> None:
        self.chunk = chunk
        self.watched: dict[StreamKey, _Watched] = {}

    def watch(self, key: StreamKey, path: Path) -> None:
        """Ship PATH as KEY's log from its start (the run writes it)."""
        self.watched.setdefault(key, _Watched(path))

    def ended(self, key: StreamKey) -> None:
        """KEY's run has ended: once read to the end, its log is complete."""
        if key in self.watched:
            self.watched[key].ended = True

    def rewind(self, key: StreamKey, offset: int) -> None:
        """Ship KEY's log again from OFFSET (what the launcher says it has, after a reconnect)."""
        if key in self.watched:
            self.watched[key].sent = max(0, offset)

    def collect(self, budget: int = 1 << 20) -> list[Chunk]:
        """What was added to the watched logs since the last call, up to BUDGET bytes."""
        out: list[Chunk] = []
        for key, w in self.watched.items():
            if budget <= 0:
                break
            try:
                fd = os.open(w.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # the run has not created it yet
                continue
            try:
                while budget > 0:
                    data = os.pread(fd, min(self.chunk, budget), w.sent)
                    if not data:
                        break
                    out.append(Chunk(key, w.sent, data))
                    w.sent += len(data)
                    budget -= len(data)
            finally:
                os.close(fd)
        return out

    def complete(self, key: StreamKey) -> bool:
        """KEY's run ended and every byte of its log was collected."""
        w = self.watched.get(key)
        if w is None or not w.ended:
            return False
        try:
            return w.sent >= w.path.stat().st_size
        except FileNotFoundError:
            return True  # the run wrote nothing

    def forget(self, key: StreamKey, remove: bool = False) -> None:
        """Stop shipping KEY (its chunks were acknowledged); REMOVE deletes the scratch file."""
        w = self.watched.pop(key, None)
        if w is not None and remove:
            with contextlib.suppress(FileNotFoundError):
                w.path.unlink()
