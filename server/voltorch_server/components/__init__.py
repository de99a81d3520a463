"""Plain-Python components (state, events, coordination, workflows, watcher). They never import grpc."""
