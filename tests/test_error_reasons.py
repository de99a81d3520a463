"""Every ErrorInfo.reason the server can send is in the ErrorReason enum, and the enum lists nothing stale.

Read from the source (ast): a reason is a literal `reason="..."` at an error's construction, the class
default of the error raised (InvalidArgument is FIELD_INVALID, ...), or NotFound's derived <KIND>_NOT_FOUND.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import voltorch
import voltorch.wire
from voltorch.v1 import error_reason_pb2
from voltorch_server import errors

SERVER = Path(errors.__file__).parent
DOCUMENTED = set(error_reason_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
ERROR_CLASSES = {
    name: cls
    for name, cls in vars(errors).items()
    if inspect.isclass(cls) and issubclass(cls, errors.VoltorchError) and cls is not errors.VoltorchError
}
UPPER_SNAKE = re.compile(r"[A-Z][A-Z0-9_]*")
# Constructions whose reason is passed through a variable, fed by literal `reason=` at their callers
# (voltorch.wire's readers give WireError its reason; test_wire_reasons_are_documented checks them;
# the request checks give _Bad its reason).
PASS_THROUGH = {
    ("components/workflows/templates/_check.py", "self.reason"),
    ("servicers/_wire.py", "exc.reason"),
    ("servicers/_requests.py", "exc.reason"),  # _Bad(..., reason="...") at its raises
    ("errors.py", "self.reason"),  # InvalidArgument.within: the same error, its fields nested
}


def test_wire_reasons_are_documented() -> None:
    wire_dir = Path(voltorch.wire.__file__).parent
    for path in wire_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "WireError"
                and len(node.args) > 2
            ):
                reason = node.args[2]
                assert isinstance(reason, ast.Constant) and reason.value in DOCUMENTED, ast.unparse(node)


def _called_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _scan() -> tuple[set[str], list[str]]:
    """(every reason the code can produce, problems found)."""
    produced: set[str] = set()
    problems: list[str] = []
    for path in sorted(SERVER.rglob("*.py")):
        rel = path.relative_to(SERVER).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if not isinstance(node, ast.Call):
                continue
            where = f"{rel}:{node.lineno}"
            reason = next((k.value for k in node.keywords if k.arg == "reason"), None)
            literal = reason.value if isinstance(reason, ast.Constant) else None
            if isinstance(literal, str) and UPPER_SNAKE.fullmatch(literal):
                produced.add(literal)  # any call: helpers (Problems) take a reason for the error they raise
            name = _called_name(node)
            if name not in ERROR_CLASSES:
                continue
            if reason is not None:
                if literal is None and (rel, ast.unparse(reason)) not in PASS_THROUGH:
                    problems.append(f"{where}: {name}(reason={ast.unparse(reason)}) is not a literal")
                continue
            if name == "NotFound":
                kind = node.args[0] if node.args else None
                if not (isinstance(kind, ast.Constant) and isinstance(kind.value, str)):
                    problems.append(f"{where}: NotFound's kind is not a literal")
                    continue
                produced.add(f"{kind.value.upper()}_NOT_FOUND")
            elif ERROR_CLASSES[name].reason in DOCUMENTED:
                produced.add(ERROR_CLASSES[name].reason)
            else:
                problems.append(
                    f"{where}: {name}(...) needs a specific reason= (its default is a status code)"
                )
    produced.add("INTERNAL")  # servicers/_status.py: any unexpected exception
    return produced, problems


def test_every_raise_has_a_documented_reason() -> None:
    produced, problems = _scan()
    assert not problems, "\n".join(problems)
    undocumented = sorted(produced - DOCUMENTED)
    assert not undocumented, (
        f"add these to ErrorReason (protos/voltorch/v1/error_reason.proto): {undocumented}"
    )


def test_every_documented_reason_is_produced() -> None:
    produced, _ = _scan()
    assert sorted(DOCUMENTED - produced) == [], "ErrorReason lists reasons nothing raises"


def test_the_readme_lists_every_reason() -> None:
    readme = (SERVER.parents[1] / "README.md").read_text()
    missing = sorted(r for r in DOCUMENTED if f"`{r}`" not in readme)
    assert not missing, f"README does not list: {missing}"


@pytest.mark.parametrize("cls", sorted(ERROR_CLASSES, key=str))
def test_class_default_reasons_are_documented_or_status_codes(cls: str) -> None:
    # A default outside the enum must be a status code name, so the scan above forces a specific reason.
    default = ERROR_CLASSES[cls].reason
    assert default in DOCUMENTED or default in {
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "FAILED_PRECONDITION",
        "OUT_OF_RANGE",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "UNAVAILABLE",
        "CANCELLED",
        "DEADLINE_EXCEEDED",
        "UNIMPLEMENTED",
    }


def _reason(fn, *args, **kwargs) -> str:
    with pytest.raises(voltorch.VoltorchError) as caught:
        fn(*args, **kwargs)
    return caught.value.reason


def test_each_service_sends_its_specific_reasons(client: voltorch.Client) -> None:
    got = {
        # state
        "KEY_INVALID": _reason(client.state.set, "has space", 1),
        "VALUE_TOO_LARGE": _reason(client.state.set, "big", "x" * (1 << 20)),
        "KEY_NOT_FOUND": _reason(client.state.get, "missing"),
        "PAGE_TOKEN_INVALID": _reason(client.state.list_page, "", page_token="not-a-token"),
        # events
        "EVENT_TYPE_INVALID": _reason(client.events.publish, "Not A Type"),
        "PAGE_SIZE_INVALID": _reason(client.events.list_page, page_size=-1),
        "CORRELATION_NOT_FOUND": _reason(client.events.correlation, "nobody"),
        # coordination
        "AGENT_NOT_FOUND": _reason(client.coordination.get_agent, "ghost"),
        "NAME_INVALID": _reason(client.coordination.register_agent, "bad id!", capabilities=["x"]),
        "NO_CAPABLE_AGENT": _reason(
            client.coordination.request, "t", required_capabilities=["nobody-has-it"]
        ),
        # workflows
        "EXECUTION_NOT_FOUND": _reason(client.workflows.get, "wf_missing"),
        "TEMPLATE_NOT_FOUND": _reason(client.workflows.start, "no-such-template"),
        "PARAMETERS_INVALID": _reason(client.workflows.start, "complete-workflow", {"nope": 1}),
        # orchestrator
        "COMPONENT_NOT_FOUND": _reason(client.restart_component, "nope"),
        "TRACE_CONTEXT_INVALID": _reason(client.trace, "not-hex"),
        "TRACE_NOT_FOUND": _reason(client.trace, "0" * 31 + "1"),
    }
    assert got == {reason: reason for reason in got}
    client.state.set("cas", 1)
    with pytest.raises(voltorch.ConflictError) as conflict:
        client.state.set("cas", 2, expected_version=5)
    assert conflict.value.reason == "VERSION_CONFLICT" and conflict.value.metadata["current_version"] == "1"
    with pytest.raises(voltorch.AlreadyExistsError) as exists:
        client.coordination.register_agent("analyst", capabilities=["x"])
    assert exists.value.reason == "AGENT_EXISTS"
    assert set(got) <= DOCUMENTED
