"""The LLM endpoints: their limiters' health and figures, as a component of the server."""

from ._endpoints import EndpointSnapshot, LlmEndpoints

__all__ = ["EndpointSnapshot", "LlmEndpoints"]
