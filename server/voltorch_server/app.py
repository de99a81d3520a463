"""Builds the gRPC server: components, servicers, health, reflection, interceptors, lifecycle."""

from __future__ import annotations

import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from voltorch.v1 import (
    coordination_pb2,
    events_pb2,
    orchestrator_pb2,
    state_pb2,
    workflows_pb2,
)

from . import servicers
from ._bind import bind
from .auth import parse_tokens
from .config import Config
from .console import Console
from .errors import StartupError
from .runtime import Runtime
from .servicers import (
    AuthInterceptor,
    ErrorInterceptor,
    HealthServicer,
    RequestDecoding,
    StreamLimitInterceptor,
    anonymous_calls,
    telemetry_interceptor,
)
from .servicers.orchestrator import bind_health

log = logging.getLogger("voltorch")

SERVICES = {
    "voltorch.v1.StateService": state_pb2,
    "voltorch.v1.EventService": events_pb2,
    "voltorch.v1.CoordinationService": coordination_pb2,
    "voltorch.v1.WorkflowService": workflows_pb2,
    "voltorch.v1.OrchestratorService": orchestrator_pb2,
}


class VoltorchServer:
    """One server process: `start()`, then `port`, then `stop()`."""

    def __init__(self, config: Config):
        """Raises StartupError (one line naming the setting or path) when it cannot start as configured."""
        self.config = config
        try:
            tokens = parse_tokens(config.auth_tokens, config.auth_tokens_file)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self.runtime = Runtime(config)
        self.console: Console | None = None
        try:
            self._build(config, tokens)
        except BaseException:
            if self.console is not None:
                self.console.stop()  # never started: closes its socket
            self.runtime.close_unstarted()
            raise
        self._stopped = False

    def _build(self, config: Config, tokens: dict[str, str]) -> None:
        auth = AuthInterceptor(tokens) if tokens else None
        self.stream_limit = StreamLimitInterceptor(
            config.max_streams,
            max_anonymous_streams=config.max_anonymous_streams,
            is_anonymous=anonymous_calls(auth),
        )
        # Outermost first. Requests are decoded innermost, in the error mapping's own wrapper: inside auth
        # (a rejected call is never decoded) and inside the stream limit (a refused stream neither), and
        # undecodable or meaningless fields become INVALID_ARGUMENT there.
        interceptors: list[grpc.ServerInterceptor] = [
            self.stream_limit,
            ErrorInterceptor(RequestDecoding()),
        ]
        # Bound now (like the gRPC port), served from start().
        if config.ui_port:
            port = 0 if config.ui_port < 0 else config.ui_port
            try:
                self.console = Console(self.runtime, config.host, port, tokens)
            except OSError as exc:
                raise StartupError(
                    f"could not bind the console on {config.host}:{port}: {exc.strerror or exc}"
                ) from None
        if auth is not None:
            interceptors.insert(0, auth)
        interceptors.insert(0, telemetry_interceptor(self.runtime))  # outermost: spans + RPC metrics
        self._pool = ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="rpc")
        self.grpc = grpc.server(
            self._pool,
            interceptors=interceptors,
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        for module in servicers.MODULES:
            module.register(self.grpc, self.runtime)
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        names = [pb.DESCRIPTOR.services_by_name[n.split(".")[-1]].full_name for n, pb in SERVICES.items()]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.grpc)
        credentials = _server_credentials(config) if config.tls_cert else None
        self.port = bind(self.grpc, config.host, config.port, credentials)
        if self.runtime.owner is not None:
            self.runtime.owner.announce(self.target)

    @property
    def target(self) -> str:
        return f"{self.config.host}:{self.port}"

    @property
    def advertised(self) -> str:
        """The address other machines reach this replica at: a wildcard host is named by the host name."""
        host = self.config.host
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = socket.gethostname()
        return f"{host}:{self.port}"

    def start(self) -> VoltorchServer:
        self.runtime.cluster.address = self.advertised
        self.runtime.start()
        self.grpc.start()
        bind_health(self.health, self.runtime.watcher, list(SERVICES))  # statuses follow the watcher
        self.runtime.watcher.announce_started(self.target)
        log.info("voltorch listening on %s", self.target)
        if self.console is not None:
            self.console.start()
            log.info("voltorch console on %s", self.console.url)
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, end streams with a resume point, finish in-flight calls, flush the database."""
        if self._stopped:
            return
        self._stopped = True
        self.health.enter_graceful_shutdown()
        if self.console is not None:
            self.console.stop()
        self.runtime.watcher.announce_stopping()
        self.runtime.stop_components()  # ends open streams with UNAVAILABLE + resume point
        self.grpc.stop(self.config.shutdown_grace if grace is None else grace).wait()
        # grpc returns once calls are over, but handler threads may still run (a stream computing its
        # resume point): let them finish (bounded) before the database they use is closed under them.
        drain = threading.Thread(target=self._pool.shutdown, kwargs={"wait": True}, daemon=True)
        drain.start()
        drain.join(timeout=5.0)
        self.runtime.stop()

    def wait(self, timeout: float | None = None) -> bool:
        return self.grpc.wait_for_termination(timeout)

    def __enter__(self) -> VoltorchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _server_credentials(config: Config) -> grpc.ServerCredentials:
    """TLS from PEM files; with tls_client_ca, clients must present a certificate it signed (mTLS)."""
    from pathlib import Path

    if not config.tls_key:
        raise StartupError("tls_cert is set but tls_key is not")

    def read(setting: str) -> bytes:
        path = getattr(config, setting)
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise StartupError(f"{setting} {path}: {exc.strerror}") from None

    pair = [(read("tls_key"), read("tls_cert"))]
    if config.tls_client_ca:
        return grpc.ssl_server_credentials(
            pair, root_certificates=read("tls_client_ca"), require_client_auth=True
        )
    return grpc.ssl_server_credentials(pair)
