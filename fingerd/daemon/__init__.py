"""Running as a Unix daemon: logging, identity, pidfile, readiness."""
