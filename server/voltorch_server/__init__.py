"""The voltorch server: components, gRPC servicers, storage and agents."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voltorch import __version__

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """`__version__`, the SDK's (one version for the distribution, pyproject.toml), read when asked: an
    import of the SDK here would make every server module, the LLM call process's too, import grpc,
    protobuf and the whole SDK."""
    if name == "__version__":
        from voltorch import __version__

        return __version__
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
