"""Plain-Python components, one package per concept: state, events, coordination, workflows, llm, system.

They never import grpc. Each package's `__init__` is its face: code outside a package imports only
from there. The pieces they share live in `shared/` and are re-exported here (lifecycle, followers, JSON paths,
the aging priority queue).
"""

from .shared import (
    AgingQueue,
    Broadcaster,
    Closed,
    Component,
    Follower,
    Overflow,
    PathError,
    parse_path,
    resolve,
)

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
