"""The trio shell around :class:`kubeedge.kit.jointoken.TokenIssuer`: renew and persist the join token.

Owns the token file (default :data:`kubeedge.kit.jointoken.DEFAULT_TOKEN_FILE`, mode 0600, replaced
atomically) that ``keadm gettoken`` prints. The file always holds a token valid for at least
``tokenRefreshDuration``. A failure to write the file propagates (the supervisor restarts the task).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import trio

from kubeedge.kit import jointoken, log

_log = log.get(__name__)


async def maintain_token(
    issuer: jointoken.TokenIssuer,
    token_file: Path = jointoken.DEFAULT_TOKEN_FILE,
    *,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Write a fresh token to ``token_file`` now and after every refresh period, until cancelled.

    ``clock`` gives Unix seconds (tests pass one tied to trio's mock clock). ``task_status.started`` fires
    once the first token is on disk.
    """
    started = False
    while True:
        token = issuer.tick(clock())
        if token is not None:
            # A ~200-byte write once per refresh period: done inline rather than in a thread, which also keeps
            # the task deterministic under trio's mock clock.
            jointoken.write_token_file(token_file, token)
            _log.info("join token renewed", file=str(token_file), next_refresh=issuer.next_refresh)
        if not started:
            task_status.started()
            started = True
        await trio.sleep(max(0.0, issuer.next_refresh - clock()))
