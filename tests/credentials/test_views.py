"""Each strategy's wire model shows exactly the strategy's fields: the non-secret ones and
`has<Field>` for each secret one (backend-free)."""

from __future__ import annotations

import pytest

from waypost.credentials.schemas import CREDENTIAL_OUT
from waypost.credentials.strategies import STRATEGIES, StrategyName, has_flag

COMMON = {"id", "name", "environmentId", "organization", "authStrategy", "createdAt", "updatedAt"}


@pytest.mark.parametrize("name", list(StrategyName))
def test_the_view_of_a_strategy_has_exactly_its_fields(name: StrategyName) -> None:
    strategy = STRATEGIES[name]
    model = CREDENTIAL_OUT[name]
    shown = {field.alias or key for key, field in model.model_fields.items()}
    expected = COMMON | set(strategy.settings) | {has_flag(s) for s in strategy.secrets}
    assert shown == expected
