import math
from decimal import Decimal

import pytest

from budget_manager import BudgetManager, InvalidBudgetError, register_model
from budget_manager.money import add, to_money


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10, Decimal(10)), (0.1, Decimal("0.1")), (0.0001725, Decimal("0.0001725")), (0, Decimal(0))],
)
def test_to_money_keeps_the_decimal_the_caller_wrote(value, expected):
    assert to_money(value) == expected


@pytest.mark.parametrize("bad", [-1, -0.01, math.nan, math.inf, -math.inf, "10", None, True, [1]])
def test_to_money_rejects_what_is_not_a_non_negative_finite_number(bad):
    with pytest.raises(InvalidBudgetError, match="total_budget"):
        to_money(bad, "total_budget")


def test_the_callers_decimal_context_does_not_round_our_sums():
    import decimal

    with decimal.localcontext() as ctx:
        ctx.prec = 3
        assert add(Decimal("1.23456"), Decimal("0.00001")) == Decimal("1.23457")


def test_a_million_additions_of_a_price_are_exact():
    total = Decimal(0)
    step = to_money(0.0001725)
    for _ in range(1_000_000):
        total = add(total, step)
    assert float(total) == 172.5
    assert sum([0.0001725] * 1000) != 0.1725  # what float accumulation would have given


def test_a_million_update_costs_read_back_exactly(tmp_path):
    register_model(
        {"exact-price-test": {"input_cost_per_token": 0.0001725, "output_cost_per_token": 0}}
    )
    manager = BudgetManager("exact", path=tmp_path / "exact.json")
    manager.create_budget(total_budget=1000, user="u")
    response = {"model": "exact-price-test", "usage": {"prompt_tokens": 1, "completion_tokens": 0}}
    for _ in range(1_000_000):
        manager.update_cost(user="u", completion_obj=response)
    assert manager.get_current_cost("u") == 172.5
    assert manager.get_model_cost("u") == {"exact-price-test": 172.5}
    manager.close()
    assert BudgetManager("exact", path=tmp_path / "exact.json").get_current_cost("u") == 172.5
