"""The DuckDB warehouse: views over the lake, built whole and swapped in."""
