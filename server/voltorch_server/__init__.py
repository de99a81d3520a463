"""The voltorch server: components, gRPC servicers, storage and agents."""

__version__ = "0.1.0"
