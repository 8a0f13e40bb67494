"""Where the time of one ``update_cost`` goes: ``python -m bench.profile [response|text] [--cprofile]``.

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


if __name__ == "__main__":
    main()
