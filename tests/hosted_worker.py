"""Client processes for the service tests: python tests/hosted_worker.py API_BASE PROJECT USER N [KEY]

Adds N costs of PRICE to USER through BudgetManager(client_type="hosted"), retrying patiently
(the server may be killed and restarted meanwhile), then prints "done"."""

from __future__ import annotations

import sys

from budget_manager import BudgetManager, register_model

PRICE = 0.0001725
RESPONSE = {"model": "worker-model", "usage": {"prompt_tokens": 1, "completion_tokens": 0}}


def main() -> None:
    api_base, project, user, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    headers = {"Authorization": f"Bearer {sys.argv[5]}"} if len(sys.argv) > 5 else None
    register_model({"worker-model": {"input_cost_per_token": PRICE, "output_cost_per_token": 0}})
    manager = BudgetManager(
        project, client_type="hosted", api_base=api_base, headers=headers, retries=12, backoff=0.1
    )
    for _ in range(count):
        manager.update_cost(user=user, completion_obj=RESPONSE)
    assert manager.pending_costs() == 0
    print("done", flush=True)


if __name__ == "__main__":
    main()
