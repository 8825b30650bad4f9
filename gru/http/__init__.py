"""http layer of Gru (see docs/architecture.md)."""
