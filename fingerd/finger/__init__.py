"""The finger service: queries answered over TCP port 79."""
