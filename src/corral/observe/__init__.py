"""The observer: `corral serve`'s HTTP API, web pages and metrics over journals and snapshots.

Read-only over the root like `corral status` (it never takes a journal's writer lock); control
requests go to a task's live supervisor through its control socket, or, when nobody supervises
the task, through the same code path as `corral kill/lose/pause/resume`. Importing this package
is cheap: the ASGI stack loads only in `corral.observe.app`.
"""
