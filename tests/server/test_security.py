"""Bearer tokens with roles, TLS and mutual TLS, through the real SDK and a real server."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import voltorch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voltorch import SleepStep, Step, WorkflowTemplate
from voltorch.errors import PermissionDeniedError, UnauthenticatedError, UnavailableError
from voltorch_server.app import VoltorchServer
from voltorch_server.servicers import allowed, parse_tokens

ADMIN = "admin-token-0123456789"
READER = "reader-token-0123456789"
AGENT = "agent-token-01234567890"


@pytest.fixture
def secured(config):
    srv = VoltorchServer(replace(config, auth_tokens=f"admin:{ADMIN},reader:{READER},agent:{AGENT}")).start()
    yield srv
    srv.stop(grace=1.0)


def test_calls_without_a_token_are_unauthenticated(secured):
    with voltorch.Client(secured.target) as c, pytest.raises(UnauthenticatedError):
        c.state.get("a")


def test_a_wrong_token_is_unauthenticated(secured):
    with (
        voltorch.Client(secured.target, token="not-a-known-token-at-all") as c,
        pytest.raises(UnauthenticatedError),
    ):
        c.state.set("a", 1)


def test_roles_decide_what_may_be_called(secured):
    with voltorch.Client(secured.target, token=ADMIN) as admin:
        admin.state.set("a", 1)
    with voltorch.Client(secured.target, token=READER) as reader:
        assert reader.state.get("a").value == 1
        assert [kv.key for kv in reader.state.list()] == ["a"]
        with pytest.raises(PermissionDeniedError) as err:
            reader.state.set("a", 2)
        assert "reader" in str(err.value)
    with voltorch.Client(secured.target, token=AGENT) as agent:
        assert agent.state.set("a", 3).kv.version == 2
        with pytest.raises(PermissionDeniedError):
            agent.state.restore("snap_x")
    with voltorch.Client(secured.target, token=AGENT) as agent, agent.events.publisher() as p:
        assert p.publish("agent.streamed").result(10).sequence > 0  # a publisher's stream is an agent's
    with voltorch.Client(secured.target, token=READER) as reader:
        refused = reader.events.publisher()
        with pytest.raises(PermissionDeniedError):
            refused.publish("reader.streamed").result(10)
        refused.close(timeout=10)
    with voltorch.Client(secured.target, token=READER) as reader:
        assert next(reader.state.watch("a", start_revision=1)).kv.value == 1  # Watch is a read
    with voltorch.Client(secured.target) as anonymous, pytest.raises(UnauthenticatedError):
        next(anonymous.state.watch("a", start_revision=1))  # streams are checked too


def test_an_agent_may_run_an_execution_and_a_reader_may_not(secured):
    """RunExecution starts an execution: the agent role's, as StartExecution (a reader is refused before
    anything is started, and run() does not fall back to start()+wait() on that refusal)."""
    with voltorch.Client(secured.target, token=ADMIN) as admin:
        admin.workflows.register_template(WorkflowTemplate(name="nap", steps=[Step("s", SleepStep(0.01))]))
    with voltorch.Client(secured.target, token=AGENT, timeout=10) as agent:
        assert agent.workflows.run("nap", timeout=10).status == "completed"
    with voltorch.Client(secured.target, token=READER, timeout=10) as reader:
        with pytest.raises(PermissionDeniedError):
            reader.workflows.run("nap", timeout=10)
        assert len(list(reader.workflows.list(template_name="nap"))) == 1


@pytest.mark.parametrize(
    "settings",
    [{"base_url": "http://127.0.0.1:9/v1"}, {"api_key_env": "VOLTORCH_TEST_SERVER_SECRET"}],
    ids=["base_url", "api_key_env"],
)
def test_only_an_admin_directs_an_llm_agents_calls(secured, settings):
    """An agent token must not send a variable of the server's environment to a URL of its choosing (an LLM
    agent's base_url, its api_key_env): refused, nothing registered. An admin may; an agent token may
    register LLM agents on the server's own endpoint and key."""
    llm = voltorch.LlmSettings(model="m", **settings)
    with voltorch.Client(secured.target, token=AGENT) as agent:
        with pytest.raises(PermissionDeniedError) as err:
            agent.coordination.register_agent("leaky", kind="llm", llm=llm)
        assert f"llm.{next(iter(settings))}" in str(err.value) and "admin" in str(err.value)
        assert "leaky" not in [a.id for a in agent.coordination.list_agents()]
        assert agent.coordination.register_agent("plain", kind="llm", llm=voltorch.LlmSettings(model="m")).id
    with voltorch.Client(secured.target, token=ADMIN) as admin:
        directed = admin.coordination.register_agent("directed", kind="llm", llm=llm).llm
        assert directed is not None and directed.model == "m"


def test_health_stays_open_for_probes(secured):
    with grpc.insecure_channel(secured.target) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_role_table():
    assert allowed("reader", "/voltorch.v1.StateService/GetKey")
    assert allowed("reader", "/voltorch.v1.EventService/Subscribe")
    assert not allowed("reader", "/voltorch.v1.EventService/Publish")
    assert allowed("agent", "/voltorch.v1.EventService/PublishStream")
    assert not allowed("reader", "/voltorch.v1.EventService/PublishStream")
    assert allowed("agent", "/voltorch.v1.CoordinationService/Connect")
    assert not allowed("agent", "/voltorch.v1.OrchestratorService/RestartComponent")
    assert allowed("admin", "/voltorch.v1.OrchestratorService/RestartComponent")


@pytest.mark.parametrize(
    "inline, message",
    [("admin", "role:token"), ("boss:abcdefghijklmnopq", "unknown role"), ("admin:short", "at least 16")],
)
def test_bad_token_configuration_is_refused(inline, message):
    with pytest.raises(ValueError, match=message):
        parse_tokens(inline)


# -- TLS --------------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=voltorch test CA",
        cwd=d,
    )
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
            cwd=d,
        )
    return d


def test_tls(config, pki):
    cfg = replace(config, tls_cert=str(pki / "server.pem"), tls_key=str(pki / "server.key"))
    with VoltorchServer(cfg) as srv:
        tls = voltorch.TLS(root_certificates=(pki / "ca.pem").read_bytes())
        with voltorch.Client(srv.target, tls=tls) as c:
            assert c.state.set("secure", True).kv.value is True
        with voltorch.Client(srv.target, timeout=3) as plain, pytest.raises(UnavailableError):
            plain.state.get("secure")


def test_mutual_tls_requires_a_client_certificate(config, pki):
    cfg = replace(
        config,
        tls_cert=str(pki / "server.pem"),
        tls_key=str(pki / "server.key"),
        tls_client_ca=str(pki / "ca.pem"),
    )
    with VoltorchServer(cfg) as srv:
        ca = (pki / "ca.pem").read_bytes()
        anon = voltorch.Client(srv.target, tls=voltorch.TLS(root_certificates=ca), timeout=3)
        with anon, pytest.raises(UnavailableError):
            anon.state.get("x")
        mtls = voltorch.TLS(
            root_certificates=ca,
            private_key=(pki / "client.key").read_bytes(),
            certificate_chain=(pki / "client.pem").read_bytes(),
        )
        with voltorch.Client(srv.target, tls=mtls, token=None) as c:
            assert c.state.set("m", 1).kv.version == 1
