"""fingerd: a finger server (RFC 1288) built on threads."""
