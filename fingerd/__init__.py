"""fingerd: a finger server (RFC 1288) built on threads."""

__version__ = "0.1.0"
"""The one place the version is written: packaging reads it from here."""
