"""One benchmark case in a fresh interpreter: ``python -m bench.worker '<json spec>'``.

The working folder is the library's own temporary folder (both libraries keep their files in the
working folder). The last line printed is the result as JSON.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench import inputs

Call = Callable[[], object]


# -- the two libraries behind one face -----------------------------------------------------------
class Library:
    """How a case opens a manager, makes a response and waits for persistence."""

    name = ""

    def import_library(self) -> None:
        raise NotImplementedError

    def open(self, track: bool = True) -> Any:
        raise NotImplementedError

    def store_path(self) -> str:
        return inputs.STORE_FILES[self.name]

    def response(self) -> Any:
        raise NotImplementedError

    def completion_cost(self, response: Any) -> float:
        raise NotImplementedError

    def wait_persisted(self) -> None:
        """Block until every change made so far is in the file (no-op where updates are durable
        when they return)."""

    def disable_per_call_saves(self, manager: Any) -> None:
        """Stop the manager from saving on every change (used to build big stores in O(n))."""

    def close(self, manager: Any) -> None:
        raise NotImplementedError


class Ours(Library):
    """budget_manager: every update is appended to the journal (a write(2)) before it returns."""

    name = "ours"

    def import_library(self) -> None:
        import budget_manager

        self.bm = budget_manager

    def open(self, track: bool = True) -> Any:
        return self.bm.BudgetManager(inputs.PROJECT)

    def response(self) -> Any:
        return self.bm.ModelResponse(inputs.RESPONSE)

    def completion_cost(self, response: Any) -> float:
        return float(self.bm.completion_cost(response))

    def close(self, manager: Any) -> None:
        manager.close()


class LiteLLM(Library):
    """litellm.BudgetManager: each change starts a thread that rewrites ``user_cost.json`` whole
    (``json.dump(user_dict, indent=4)``). We keep a handle on that thread (same code, same work) so
    a case can wait until the change is in the file, which is when ours has persisted it too."""

    name = "litellm"

    def import_library(self) -> None:
        import litellm

        self.litellm = litellm
        self.pending: list[threading.Thread] = []

    def open(self, track: bool = True) -> Any:
        manager = self.litellm.BudgetManager(project_name=inputs.PROJECT)
        if not track:
            return manager
        pending = self.pending

        def save_in_thread() -> None:  # what BudgetManager._save_data_thread does, kept joinable
            thread = threading.Thread(target=manager.save_data)
            thread.start()
            pending.append(thread)

        manager._save_data_thread = save_in_thread
        return manager

    def response(self) -> Any:
        return self.litellm.ModelResponse(**json.loads(json.dumps(inputs.RESPONSE)))

    def completion_cost(self, response: Any) -> float:
        return float(self.litellm.completion_cost(completion_response=response))

    def wait_persisted(self) -> None:
        while self.pending:
            self.pending.pop().join()

    def disable_per_call_saves(self, manager: Any) -> None:
        manager._save_data_thread = lambda: None

    def close(self, manager: Any) -> None:
        self.wait_persisted()


LIBRARIES: dict[str, type[Library]] = {"ours": Ours, "litellm": LiteLLM}


# -- measuring -----------------------------------------------------------------------------------
def summarize(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    if len(ordered) >= 4:
        q1, _, q3 = statistics.quantiles(ordered, n=4)
    else:
        q1, q3 = ordered[0], ordered[-1]
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "q1": q1,
        "q3": q3,
        "mean": statistics.fmean(ordered),
        "n": len(ordered),
    }


def per_call(
    call: Call, *, batch_seconds: float, repeats: int, max_seconds: float, min_warmup: int = 3
) -> dict[str, Any]:
    """Seconds per call: batches of calls timed whole, ``repeats`` batches (fewer when a case would
    take longer than ``max_seconds``, never fewer than 3), summarized over the batches."""
    call()  # first call untimed: it loads what is loaded lazily (price table, tokenizer files)
    started = time.perf_counter()
    done = 0
    while done < min_warmup or (time.perf_counter() - started < 0.05 and done < 20_000):
        call()
        done += 1
    estimate = (time.perf_counter() - started) / done
    batch = max(1, min(200_000, round(batch_seconds / estimate)))
    repeats = max(3, min(repeats, int(max_seconds / (batch * estimate) or 1)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(batch):
            call()
        samples.append((time.perf_counter() - t0) / batch)
    result = summarize(samples)
    result["batch"] = batch
    result["samples"] = samples
    return result


def per_call_returned(
    call: Call, after: Call, *, repeats: int, max_seconds: float
) -> dict[str, Any]:
    """Seconds until each call returns, each timed alone, with ``after`` (waiting for the
    library's background save) done outside the timed region."""
    samples = []
    deadline = time.perf_counter() + max_seconds
    for i in range(max(3, repeats)):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
        after()
        if i >= 2 and time.perf_counter() > deadline:
            break
    result = summarize(samples)
    result["samples"] = samples
    return result


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    VmHWM from /proc (Linux) rather than ru_maxrss: ru_maxrss survives exec, so a child would
    report its parent's peak if that was higher."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# -- the cases -----------------------------------------------------------------------------------
def case_per_call(lib: Library, spec: dict[str, Any]) -> dict[str, Any]:
    """update_response / update_text / projected / get_current over a store of ``size`` users."""
    figure, size = spec["figure"], spec["size"]
    inputs.write_store(lib.store_path(), size, time.time())
    manager = lib.open()
    users = itertools.cycle(inputs.sample_users(size))
    response = lib.response()
    model, text_in, text_out = inputs.MODEL, inputs.INPUT_TEXT, inputs.OUTPUT_TEXT
    conversation = inputs.CONVERSATION
    wait = lib.wait_persisted

    call: Call
    if figure == "update_response":

        def call() -> None:
            manager.update_cost(user=next(users), completion_obj=response)
            wait()

        def bare() -> None:
            manager.update_cost(user=next(users), completion_obj=response)

    elif figure == "update_text":

        def call() -> None:
            manager.update_cost(
                user=next(users), model=model, input_text=text_in, output_text=text_out
            )
            wait()

        def bare() -> None:
            manager.update_cost(
                user=next(users), model=model, input_text=text_in, output_text=text_out
            )

    elif figure == "projected":

        def call() -> None:
            manager.projected_cost(model, conversation, next(users))

        bare = call
    elif figure == "get_current":

        def call() -> None:
            manager.get_current_cost(next(users))

        bare = call
    else:
        raise ValueError(figure)

    result: dict[str, Any] = {
        "seconds": per_call(
            call,
            batch_seconds=spec["batch_seconds"],
            repeats=spec["repeats"],
            max_seconds=spec["max_seconds"],
        )
    }
    if lib.name == "litellm" and figure.startswith("update"):
        # What the caller waits for when the save is left to run in the background.
        result["returned"] = per_call_returned(
            bare, wait, repeats=spec["repeats"] * 3, max_seconds=spec["max_seconds"] / 2
        )
    lib.wait_persisted()
    if figure == "update_response":
        result["unit_cost"] = lib.completion_cost(response)
    lib.close(manager)
    return result


def case_create(lib: Library, spec: dict[str, Any]) -> dict[str, Any]:
    """create_budget for ``size`` new users in an empty folder, then the library's save."""
    size = spec["size"]
    names = [inputs.user_name(i) for i in range(size)]
    manager = lib.open()
    lib.disable_per_call_saves(manager)
    t0 = time.perf_counter()
    for name in names:
        manager.create_budget(total_budget=1000.0, user=name, duration="monthly")
    t1 = time.perf_counter()
    manager.save_data()
    lib.close(manager)
    t2 = time.perf_counter()
    return {
        "create_seconds": t1 - t0,
        "save_seconds": t2 - t1,
        "seconds": t2 - t0,
        "file_bytes": os.path.getsize(lib.store_path()),
    }


def case_reopen(lib: Library, spec: dict[str, Any]) -> dict[str, Any]:
    """A new manager over the store ``create`` left, up to its first read."""
    t0 = time.perf_counter()
    manager = lib.open()
    manager.get_current_cost(inputs.user_name(spec["size"] - 1))
    seconds = time.perf_counter() - t0
    lib.close(manager)
    return {"seconds": seconds}


def case_memory(lib: Library, spec: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS of a process that opens a store of ``size`` users, updates one and reads one."""
    after_import = peak_rss_bytes()
    manager = lib.open()
    response = lib.response()
    manager.update_cost(user=inputs.user_name(0), completion_obj=response)
    manager.get_current_cost(inputs.user_name(spec["size"] - 1))
    lib.wait_persisted()
    peak = peak_rss_bytes()
    lib.close(manager)
    return {"peak_bytes": peak, "after_import_bytes": after_import}


def case_concurrent(lib: Library, spec: dict[str, Any]) -> dict[str, Any]:
    """One of N processes updating one user of one store; waits for "go" on stdin."""
    # LiteLLM with its real per-change save threads, as a deployment would run them.
    manager = lib.open(track=False)
    response = lib.response()
    unit_cost = lib.completion_cost(response)  # loads the price table before the clock starts
    user = inputs.user_name(0)
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    for _ in range(spec["updates"]):
        manager.update_cost(user=user, completion_obj=response)
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join()
    end = time.monotonic()
    lib.close(manager)
    return {"start": start, "end": end, "unit_cost": unit_cost}


def case_read_cost(lib: Library, spec: dict[str, Any]) -> dict[str, Any]:
    """The spend a fresh manager reads back for user 0 (after the concurrent case)."""
    try:
        manager = lib.open()
        cost = float(manager.get_current_cost(inputs.user_name(0)))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    lib.close(manager)
    return {"current_cost": cost}


CASES = {
    "per_call": case_per_call,
    "create": case_create,
    "reopen": case_reopen,
    "memory": case_memory,
    "concurrent": case_concurrent,
    "read_cost": case_read_cost,
}


def main() -> None:
    if sys.argv[1:2] == ["--peak-rss"]:  # the bare interpreter's peak, for a baseline
        print(peak_rss_bytes())
        return
    if sys.argv[1:2] == ["--write-store"]:  # a store file, written away from the parent process
        inputs.write_store(sys.argv[2], int(sys.argv[3]), time.time())
        return
    spec = json.loads(sys.argv[1])
    lib = LIBRARIES[spec["library"]]()
    t0 = time.perf_counter()
    lib.import_library()
    import_seconds = time.perf_counter() - t0
    result = CASES[spec["case"]](lib, spec)
    result["import_seconds"] = import_seconds
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
