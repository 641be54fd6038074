"""The worker's side of streamed output (issue 14): ship what runs write, in chunks.

Runs write straight to their files, as everywhere in corral (so they outlive whoever reads
them); on a pilot worker with streamed output those files are node-local scratch, and the
shipper reads what was added since the last call and hands it over as chunks that carry their
offset in the run's log. The launcher appends them with `StreamLogWriter.append_at`, which
drops what it already has, so chunks sent again after a reconnect are harmless; after a
reconnect the worker rewinds each log to what the launcher acknowledged (`rewind_all`). Once
a run has ended and its log was read to the end and acknowledged, `forget` drops it (and may
remove the file).

The files are the worker's spool: what was not acknowledged yet is read again from them after
a reconnect, so nothing waits in memory. `trim` bounds the spool: when the bytes not yet
acknowledged pass its limit, the unsent tail of the biggest backlog is cut (the run writes
with O_APPEND, so its next write lands at the new end) and a marker line saying how many
bytes were dropped takes its place; the next chunk of that log carries the count (`dropped`).
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
    dropped: int = 0  # bytes dropped from the log just before this chunk (a full spool)


@dataclass(slots=True)
class _Watched:
    path: Path
    sent: int = 0  # bytes of the file handed over so far
    acked: int = 0  # bytes of the file the receiver has durably
    ended: bool = False  # the run has ended: the file grows no more
    dropped: int = 0  # bytes cut at `sent` by trim, not yet told
    marked: int = 0  # the length of the marker written at `sent` for them


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

    def acked(self, key: StreamKey, offset: int) -> None:
        """The receiver has KEY's log up to OFFSET durably."""
        w = self.watched.get(key)
        if w is not None and offset > w.acked:
            w.acked = offset
            w.sent = max(w.sent, offset)

    def rewind_all(self) -> None:
        """A new connection: ship every log again from what was acknowledged."""
        for w in self.watched.values():
            w.sent = w.acked

    def backlog(self) -> int:
        """Bytes of the watched files not acknowledged yet (what the spool holds)."""
        return sum(max(0, _size(w.path) - w.acked) for w in self.watched.values())

    def trim(self, limit: int) -> int:
        """Cut unsent output while the backlog passes LIMIT: the biggest unsent tail first,
        replaced by a marker line. Returns the bytes dropped."""
        dropped = 0
        backlog = self.backlog()
        while backlog > limit:
            unsent = {key: _size(w.path) - w.sent for key, w in self.watched.items()}
            key = max(unsent, key=lambda k: unsent[k], default=None)
            if key is None or unsent[key] <= 0:
                break
            cut = _cut(self.watched[key])
            if cut <= 0:
                break
            dropped += cut
            backlog -= cut
        return dropped

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
                    out.append(Chunk(key, w.sent, data, w.dropped))
                    w.dropped = w.marked = 0
                    w.sent += len(data)
                    budget -= len(data)
            finally:
                os.close(fd)
        return out

    def complete(self, key: StreamKey) -> bool:
        """KEY's run ended and every byte of its log was collected."""
        w = self.watched.get(key)
        return w is not None and w.ended and w.sent >= _size(w.path)

    def done(self, key: StreamKey) -> bool:
        """KEY's run ended and every byte of its log was acknowledged."""
        w = self.watched.get(key)
        return w is not None and w.ended and w.acked >= _size(w.path)

    def forget(self, key: StreamKey, remove: bool = False) -> None:
        """Stop shipping KEY (its chunks were acknowledged); REMOVE deletes the scratch file."""
        w = self.watched.pop(key, None)
        if w is not None and remove:
            with contextlib.suppress(FileNotFoundError):
                w.path.unlink()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0  # not created yet, or the run wrote nothing


def marker(count: int) -> bytes:
    return f"\n[corral: {count} bytes of output dropped here: the worker's spool was full]\n".encode()


def _cut(w: _Watched) -> int:
    """Truncate W's file to what was sent and append the marker; the bytes dropped."""
    try:
        fd = os.open(w.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return 0
    try:
        size = os.fstat(fd).st_size
        cut = size - w.sent - w.marked  # a marker not sent yet is rewritten, not counted
        if cut <= 0:
            return 0
        os.ftruncate(fd, w.sent)
        # bytes the run wrote between the fstat and the truncation are dropped uncounted
        w.dropped += cut
        text = marker(w.dropped)
        os.write(fd, text)
        w.marked = len(text)
        return cut
    finally:
        os.close(fd)
