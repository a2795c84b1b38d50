"""The HTTP gateway: authenticates users, validates requests, routes them over gRPC."""
