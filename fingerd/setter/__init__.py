"""Local users setting their own status: a Unix socket, a TCP setter, a client."""
