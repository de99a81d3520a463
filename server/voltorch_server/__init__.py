"""The voltorch server: components, gRPC servicers, storage and agents."""

from voltorch import __version__  # one version for the distribution (pyproject.toml)

__all__ = ["__version__"]
