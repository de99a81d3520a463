"""The one interface every agent kind implements, and the values that cross it.

The coordination engine hands an `AgentTask` to an `Agent` and gets back an `AgentOutput` or an
`AgentError`. Threaded agents (offline, LLM, function) block in `run()` on an engine thread; agents that
deliver results from elsewhere (remote workers) set `threaded = False` and implement `start()`.
Cancellation is one `CancelSignal` per task: agents poll it, wait on it, or hang callbacks on it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..json_encoders import indented
from ..priority import Priority

# The plain values live in _values (the LLM call process imports them without this module's Priority);
# they are reached here, as before.
from ._values import NO_USAGE, AgentError, CancelSignal, TokenUsage
from ._values import Latch as Latch

if TYPE_CHECKING:
    from .limiter import EndpointLimiter

OFFLINE_LABEL = "voltorch offline agent (deterministic, no LLM)"


@dataclass(frozen=True)
class ToolSpec:
    """A function an agent offers to tool-calling LLM agents; `parameters` is its arguments' JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def schema(self) -> dict[str, Any]:
        """As an OpenAI function tool."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters or {"type": "object", "properties": {}},
            },
        }


@dataclass(frozen=True)
class ToolResult:
    """What one tool call gave back: its output (or error message) and the child coordination that ran it."""

    output: str
    coordination_id: str = ""
    agent_id: str = ""
    error: str = ""
    usage: TokenUsage = NO_USAGE


class Toolbox(ABC):
    """How an agent finds and calls the tools other agents offer (the coordination engine implements it)."""

    @abstractmethod
    def specs(self, names: tuple[str, ...]) -> list[ToolSpec]:
        """The tools by name; AgentError TOOL_NOT_FOUND for a name no agent offers."""

    @abstractmethod
    def call(
        self, task: AgentTask, name: str, arguments: dict[str, Any], cancel: CancelSignal | None = None
    ) -> ToolResult:
        """Run one call as a child coordination of the task and wait for it; `cancel` (the task's) set
        meanwhile cancels the call too."""

    def check_budget(self, task: AgentTask, used: TokenUsage) -> None:  # noqa: B027 - optional hook
        """Before another model call of a task that has already used `used`: AgentError BUDGET_EXCEEDED
        when the budget of the task's execution would be crossed by going on."""


@dataclass(frozen=True)
class AgentTask:
    """One unit of work for one agent. `context` holds the caller's JSON context plus, in chained
    modes, the previous agent's output under "previous_output" (and "previous_structured_output")."""

    task_id: str
    coordination_id: str
    text: str
    context: dict[str, Any] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()  # what the request asked for (may be empty)
    attempt: int = 1
    deadline: float | None = None  # epoch seconds; the engine gives up after this
    traceparent: str = ""
    correlation_id: str = ""
    priority: Priority = Priority.NORMAL
    execution_id: str = ""
    step_id: str = ""
    agent_id: str = ""  # the agent it was dispatched to
    agent_capabilities: tuple[str, ...] = ()  # that agent's capabilities at dispatch
    # Where a streaming agent writes its text as it grows (the engine batches it into agent.output.delta
    # events); None when nobody listens. Deltas are shown live only: the final output is what run() returns.
    on_delta: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    # Where the text that ends the output goes (run() returns right after): kept by the engine and written
    # with the outcome instead of published on its own. None: on_delta gets it like any other text.
    on_last_delta: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    toolbox: Toolbox | None = field(default=None, compare=False, repr=False)  # for tool-calling agents

    def delta(self, text: str, *, last: bool = False) -> None:
        """Report text the agent just produced (a no-op without a listener); `last`: no more text follows,
        the agent is about to return its output."""
        if not text:
            return
        if last and self.on_last_delta is not None:
            self.on_last_delta(text)
        elif self.on_delta is not None:
            self.on_delta(text)

    def remaining(self, now: float) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - now)


@dataclass(frozen=True)
class AgentOutput:
    output: str
    structured_output: Any = None
    usage: TokenUsage = NO_USAGE


Outcome = AgentOutput | AgentError
DoneCallback = Callable[[Outcome], None]


class Agent(ABC):  # noqa: B024 - run() or start() is overridden, depending on `threaded`
    """An agent runtime. Subclasses override `run` (threaded) or `start` (threaded = False)."""

    kind = ""
    threaded = True

    def run(self, task: AgentTask, cancel: CancelSignal) -> AgentOutput:
        """Do the task, blocking; raise AgentError on failure. Return early when `cancel` is set."""
        raise TypeError(f"{type(self).__name__} is threaded: it must override run()")

    def start(self, task: AgentTask, cancel: CancelSignal, done: DoneCallback) -> None:
        """Begin the task without blocking; call done(outcome) exactly once (unless cancelled)."""
        raise TypeError(f"{type(self).__name__} sets threaded = False: it must override start()")

    @property
    def connected(self) -> bool:
        """Whether the agent can take tasks now (remote workers: a live session)."""
        return True

    def endpoint_limiter(self) -> EndpointLimiter | None:
        """The limiter of the endpoint this agent's tasks call (LLM agents), else None. The engine keeps
        tasks in its priority queue while that endpoint's window is full."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (the agent was unregistered or the engine stopped)."""


class FunctionAgent(Agent):
    """An in-process agent from a Python callable: fn(task, cancel) -> str | dict | AgentOutput.

    A dict becomes the structured output (its JSON text the output). Registered programmatically on the
    engine (tests, benches, embedding); never reachable through the API.
    """

    kind = "function"

    def __init__(self, fn: Callable[[AgentTask, CancelSignal], Any]):
        self.fn = fn

    def run(self, task: AgentTask, cancel: CancelSignal) -> AgentOutput:
        return as_output(self.fn(task, cancel))


def as_output(value: Any) -> AgentOutput:
    """Normalise what a handler returned into an AgentOutput."""
    if isinstance(value, AgentOutput):
        return value
    if value is None:
        return AgentOutput("")
    if isinstance(value, str):
        return AgentOutput(value)
    try:
        text = indented(value)  # json.dumps(value, indent=2)
    except (TypeError, ValueError) as exc:
        raise AgentError(f"agent returned a value that is not JSON: {exc}", code="INVALID_OUTPUT") from None
    return AgentOutput(text, value)
