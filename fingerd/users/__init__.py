"""The user table, the status file that feeds it, and its watcher."""
