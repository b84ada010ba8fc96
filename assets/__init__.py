"""Dagster asset definitions."""
