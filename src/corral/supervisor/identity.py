"""Who a run runs as: a `user:` needs a root supervisor (the reaper switches to it)."""

from __future__ import annotations

import os
import pwd

from corral.spec.errors import SpecError
from corral.spec.model import Ensemble, Task
from corral.spec.validate import users_of


def own_name() -> str | None:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return None


def check_users(subject: Task | Ensemble, file: str | None) -> None:
    """Refuse a `user:` other than our own unless we are root: only root may switch users.
    Whether the user exists is known when a run starts (the run then fails, saying so)."""
    if os.geteuid() == 0:
        return
    me = own_name()
    for path, user in users_of(subject):
        if user != me:
            raise SpecError(
                f"running as {user!r} needs a supervisor running as root (this one is {me or os.geteuid()})",
                file=file,
                path=path,
                hint="remove user:, or start corral as root",
            )
