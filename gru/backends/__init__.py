"""Shared state behind interfaces: memory (one process) and Redis (many workers and nodes)."""
