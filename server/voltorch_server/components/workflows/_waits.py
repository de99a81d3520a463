"""What a waiting step reports: the outputs of WaitStep and ApprovalStep (received or timed out) and the
`WaitingFor` read model GetExecution shows. Pure functions: the run decides when they apply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

DECISIONS = {
    "approve": "approved",
    "approved": "approved",
    "reject": "rejected",
    "rejected": "rejected",
    "edit": "edited",
    "edited": "edited",
}


class _Signal(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def payload(self) -> Any: ...
    @property
    def sender(self) -> str: ...


@dataclass(frozen=True)
class WaitingFor:
    step_id: str
    kind: str  # signal | approval | sleep | start_after
    signal: str = ""
    prompt: str = ""
    data: Any = None
    deadline: float | None = None  # timer: when it fires; signal/approval: when the wait times out


def wait_outcome(name: str, sig: _Signal | None) -> dict[str, Any]:
    """A WaitStep's structured output: the signal received, or timed out (sig None)."""
    if sig is None:
        return {"signal": name, "timed_out": True, "payload": None}
    return {
        "signal": name,
        "timed_out": False,
        "payload": sig.payload,
        "signal_id": sig.id,
        "sender": sig.sender,
    }


def approval_timed_out(data: Any) -> dict[str, Any]:
    """An ApprovalStep's structured output when nobody decided in time."""
    return {
        "approved": False,
        "decision": "timed_out",
        "decided_by": "",
        "comment": "",
        "data": data,
        "timed_out": True,
    }


def approval_outcome(sig: _Signal, data: Any) -> dict[str, Any] | None:
    """An ApprovalStep's structured output; None when the signal carries no valid decision."""
    payload = sig.payload if isinstance(sig.payload, dict) else {"decision": sig.payload}
    decision = DECISIONS.get(str(payload.get("decision", "")).strip().lower())
    if decision is None:
        return None
    return {
        "approved": decision != "rejected",
        "decision": decision,
        "decided_by": sig.sender,
        "comment": str(payload.get("comment") or ""),
        "data": payload.get("data", data) if decision == "edited" else data,
        "timed_out": False,
    }
