"""Plain-Python components, one package per concept: state, events, coordination, workflows, system.

They never import grpc. Each package's `__init__` is its face: code outside a package imports only
from there. This module is the face of the pieces they share (lifecycle, followers, JSON paths).
"""

from ._base import Component
from ._follow import Broadcaster, Closed, Follower, Overflow
from ._jsonpath import PathError, parse_path, resolve

__all__ = ["Broadcaster", "Closed", "Component", "Follower", "Overflow", "PathError", "parse_path", "resolve"]
