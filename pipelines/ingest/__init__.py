"""Fetch each account and land its answer untouched; when a day is captured."""
