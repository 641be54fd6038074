"""A driver program for the durability tests: python driver_script.py ROOT ID LOG GATE N FIRST
[WORKERS] (max_workers, N unless given).

Submits calls counted(LOG, i, gate) for i < N (calls i < FIRST get no gate and finish at
once), prints "finished" once those have, then every result as "result I V" and "done".
"""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle

sys.path.insert(0, str(Path(__file__).parent))
import executor_calls as calls

import corral

cloudpickle.register_pickle_by_value(calls)


def main() -> None:
    root, ident, log, gate, n, first = sys.argv[1:7]
    workers = int(sys.argv[7]) if len(sys.argv) > 7 else int(n)
    with corral.Executor(id=ident, root=root, max_workers=workers) as ex:
        futs = [ex.submit(calls.counted, log, i, None if i < int(first) else gate) for i in range(int(n))]
        for f in futs[: int(first)]:
            f.result(timeout=120)
        print("finished", flush=True)
        for i, f in enumerate(futs):
            print("result", i, f.result(timeout=300), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
