"""KIS balance history pipeline."""
