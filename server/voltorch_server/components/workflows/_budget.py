"""An execution's budget held against its usage: once usage reaches a limit, no further step may start,
so the run fails before its next model call (not after the money is spent)."""

from __future__ import annotations

from ...agents.base import TokenUsage
from ...errors import ResourceExhausted
from .templates import Budget


def enforce(budget: Budget | None, used: TokenUsage) -> None:
    """Raise ResourceExhausted (BUDGET_EXCEEDED, metadata: limit, allowed, used) for the first limit
    that `used` has reached; limits of 0 do not count."""
    if budget is None:
        return
    for limit, allowed, spent, what in (
        ("max_llm_calls", budget.max_llm_calls, used.llm_calls, "model calls made"),
        ("max_tokens", budget.max_tokens, used.total_tokens, "tokens used"),
        ("max_cost", budget.max_cost, used.cost, "USD spent"),
    ):
        if allowed and spent >= allowed:
            shown = f"{spent:.6g}" if isinstance(spent, float) else str(spent)
            raise ResourceExhausted(
                f"budget {limit}={allowed:g} reached: {shown} {what}",
                reason="BUDGET_EXCEEDED",
                metadata={"limit": limit, "allowed": f"{allowed:g}", "used": shown},
            )
