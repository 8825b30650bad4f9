"""sockets layer of Gru (see docs/architecture.md)."""
