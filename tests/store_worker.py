"""Worker processes for the multi-process store tests: python tests/store_worker.py MODE PATH ..."""

from __future__ import annotations

import sys

from budget_manager import BudgetManager, register_model

PRICE = 0.0001725
RESPONSE = {"model": "worker-model", "usage": {"prompt_tokens": 1, "completion_tokens": 0}}


def manager(path: str) -> BudgetManager:
    register_model({"worker-model": {"input_cost_per_token": PRICE, "output_cost_per_token": 0}})
    return BudgetManager("workers", path=path)


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    m = manager(path)
    if mode == "update":  # N updates of one user
        user, count = sys.argv[3], int(sys.argv[4])
        for _ in range(count):
            m.update_cost(user=user, completion_obj=RESPONSE)
    elif mode == "ack":  # one update per line read, acknowledging each one that returned
        user = sys.argv[3]
        for n, _ in enumerate(sys.stdin, start=1):
            m.update_cost(user=user, completion_obj=RESPONSE)
            sys.stdout.write(f"{n}\n")
            sys.stdout.flush()
    elif mode == "churn":  # updates and compactions forever
        users = m.get_users()
        i = 0
        while True:
            m.update_cost(user=users[i % len(users)], completion_obj=RESPONSE)
            i += 1
            if i % 50 == 0:
                m.save_data()
                sys.stdout.write(f"{i}\n")
                sys.stdout.flush()
    elif mode == "create":  # creates users with a prefix
        prefix, count = sys.argv[3], int(sys.argv[4])
        for i in range(count):
            m.create_budget(total_budget=1, user=f"{prefix}-{i}")
            m.update_cost(user=f"{prefix}-{i}", completion_obj=RESPONSE)


if __name__ == "__main__":
    main()
