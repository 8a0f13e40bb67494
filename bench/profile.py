"""Where the time of one ``update_cost`` goes.

    python -m bench.profile [response|text] [--cprofile]   # a profiler's call tree
    python -m bench.profile --breakdown                    # each part timed alone (timeit)

Runs 100,000 updates (response form) or 20,000 (text form) over a 10-user store in a temporary
folder under pyinstrument (statistical, low overhead; the ``bench`` extra) or cProfile, and prints
the call tree / the top functions. Profilers slow Python code more than system calls, so read the
shares, not the absolute times; ``python -m bench`` gives the real per-call figures.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench import inputs


def main() -> None:
    form = "text" if "text" in sys.argv[1:] else "response"
    use_cprofile = "--cprofile" in sys.argv[1:]
    os.environ.setdefault("BUDGET_MANAGER_OFFLINE", "1")
    os.chdir(tempfile.mkdtemp(prefix="bm-profile-"))
    inputs.write_store(inputs.STORE_FILES["ours"], 10, time.time())

    import budget_manager

    manager = budget_manager.BudgetManager(inputs.PROJECT)
    response = budget_manager.ModelResponse(inputs.RESPONSE)
    users = inputs.sample_users(10)
    if form == "text":
        count = 20_000

        def call(user: str) -> None:
            manager.update_cost(
                user=user,
                model=inputs.MODEL,
                input_text=inputs.INPUT_TEXT,
                output_text=inputs.OUTPUT_TEXT,
            )

    else:
        count = 100_000

        def call(user: str) -> None:
            manager.update_cost(user=user, completion_obj=response)

    for user in users:  # warm up: price table, tokenizer, records with a model breakdown
        call(user)
    if "--breakdown" in sys.argv[1:]:
        breakdown(manager, response)
        manager.close()
        return

    def loop() -> None:
        for i in range(count):
            call(users[i % len(users)])

    if use_cprofile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(loop)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    else:
        from pyinstrument import Profiler

        sampler = Profiler(interval=0.0001)
        sampler.start()
        loop()
        sampler.stop()
        print(sampler.output_text(unicode=True, color=False))
    manager.close()


def breakdown(manager: Any, response: Any) -> None:
    """Best-of-7 timeit of update_cost and of its parts, without a profiler's distortion."""
    import fcntl
    import timeit

    from budget_manager import costs, records

    store = manager.store
    user = inputs.sample_users(10)[3]
    model, amount = costs.response_cost(response)
    record = store.get(user)
    now = time.time()
    line = f'{{"u": "{user}", "r": {records.to_json(record)}}}\n'.encode()
    junk = os.open("write-test", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def lock_stat_unlock() -> None:
        fcntl.flock(store._lock_fd, fcntl.LOCK_EX)
        store._sync(True)
        fcntl.flock(store._lock_fd, fcntl.LOCK_UN)

    parts: list[tuple[str, Callable[[], object]]] = [
        (
            "update_cost(completion_obj=...) whole",
            lambda: manager.update_cost(user=user, completion_obj=response),
        ),
        ("  costs.response_cost (usage + prices)", lambda: costs.response_cost(response)),
        ("  store.charge whole", lambda: store.charge(user, model, amount, now)),
        ("    flock + stat(journal) + unlock", lock_stat_unlock),
        ("    os.write of one journal line", lambda: os.write(junk, line)),
        ("    records.to_json", lambda: records.to_json(record)),
        (
            "    record.copy + records.charge",
            lambda: records.charge(record.copy(), model, amount, now),
        ),
        ("  record.to_public", record.to_public),
        ("get_current_cost whole", lambda: manager.get_current_cost(user)),
    ]
    number = 20_000
    for label, fn in parts:
        best = min(timeit.repeat(fn, number=number, repeat=7)) / number
        print(f"{label:44s} {best * 1e6:7.2f} µs")
    os.close(junk)


if __name__ == "__main__":
    main()
