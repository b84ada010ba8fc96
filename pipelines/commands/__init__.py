"""Command-line entry points: make demo, sql, service, and kis-redact."""
