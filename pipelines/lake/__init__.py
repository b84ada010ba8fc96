"""The Parquet lake: table schemas, daily files, and compacted closed months."""
