"""Reports read from the warehouse: the per-run summary and the HTML portfolio report."""
