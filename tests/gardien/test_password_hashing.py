"""argon2id off the event loop (issue 8, proof and performance): password checks run in hashing
threads of their own, at a lower scheduling priority, while the event loop keeps turning."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from gardien.security import HASHING_NICENESS, HASHING_THREADS, hash_password, verify_password

PASSWORD = "lantern over the river"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
async def test_mfa7_password_checks_run_in_low_priority_hashing_threads_off_the_event_loop() -> (
    None
):
    hashed = await hash_password(PASSWORD)
    checks = [asyncio.ensure_future(verify_password(hashed, PASSWORD)) for _ in range(3)]
    wrong = asyncio.ensure_future(verify_password(hashed, "lantern under the river"))

    turns = 0
    while not all(check.done() for check in [*checks, wrong]):
        turns += 1  # the event loop runs other work while every check is under way
        await asyncio.sleep(0.001)

    assert [check.result() for check in checks] == [True, True, True]
    assert wrong.result() is False
    assert turns > 0
    hashing = [t for t in threading.enumerate() if t.name.startswith("argon2")]
    assert 1 <= len(hashing) <= HASHING_THREADS
    assert threading.main_thread() not in hashing
    for thread in hashing:
        assert thread.native_id is not None
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == HASHING_NICENESS
    # The event loop's own thread keeps the normal priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < HASHING_NICENESS
