"""A process of the contract suite's multi-process tests:
python tests/contract_worker.py KIND URL MODE ARGS..."""

from __future__ import annotations

import sys
import time

from budget_manager import BudgetExceededError, BudgetManager


def manager(kind: str, url: str) -> BudgetManager:
    if kind == "hosted":
        return BudgetManager("contract", client_type="hosted", api_base=url)
    return BudgetManager("contract", store=url)


def main() -> None:
    kind, url, mode, *args = sys.argv[1:]
    bm = manager(kind, url)
    if mode == "race":  # reserve and settle $0.01 N times, printing each settled cost
        user, count = args[0], int(args[1])
        for _ in range(count):
            try:
                with bm.reserve(user, amount=0.01) as hold:
                    print(hold.settle(cost=0.01), flush=True)
            except BudgetExceededError:
                pass
    elif mode == "hold-and-die":  # hold, say so, and wait to be killed
        user, amount, ttl = args[0], float(args[1]), float(args[2])
        bm.reserve(user, amount=amount, ttl=ttl)
        print("held", flush=True)
        time.sleep(600)


if __name__ == "__main__":
    main()
