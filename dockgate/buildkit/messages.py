"""Protobuf message classes for the BuildKit messages dockgate reads (stub)."""
