"""Plain-Python components, one package per concept: state, events, coordination, workflows, llm, system.

They never import grpc. Each package's `__init__` is its face: code outside a package imports only
from there. This module is the face of the pieces they share (lifecycle, followers, JSON paths, the aging
priority queue).
"""

from ._base import Component
from ._follow import Broadcaster, Closed, Follower, Overflow
from ._jsonpath import PathError, parse_path, resolve
from ._queue import AgingQueue

__all__ = [
    "AgingQueue",
    "Broadcaster",
    "Closed",
    "Component",
    "Follower",
    "Overflow",
    "PathError",
    "parse_path",
    "resolve",
]
