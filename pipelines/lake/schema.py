"""Column schemas of the tidy tables, declared once: Parquet files and DuckDB views follow them.

Every amount is DECIMAL(38, 8): the API sends up to 19 integer digits and up to 8 decimals, so
no amount is ever rounded or routed through float.
"""

from __future__ import annotations

import pyarrow as pa

from pipelines.kis.protocol import OUTPUT1_FIELDS, OUTPUT2_FIELDS

AMOUNT = pa.decimal128(38, 8)
FETCHED_AT = pa.timestamp("us", tz="UTC")

#: The partition column: in each Parquet file's directory name (Hive style), not in the file.
PARTITION_COLUMN = "snapshot_date"

ASSET_CATEGORIES = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("product_code", pa.string(), nullable=False),
        pa.field("layout", pa.string(), nullable=False),
        pa.field("category_seq", pa.int16(), nullable=False),
        pa.field("category_code", pa.string(), nullable=False),
        pa.field("category_ko", pa.string(), nullable=False),
        pa.field("category_en", pa.string(), nullable=False),
        pa.field("is_total", pa.bool_(), nullable=False),
        *(pa.field(name, AMOUNT) for name in OUTPUT1_FIELDS),
        pa.field("fetched_at", FETCHED_AT, nullable=False),
    ]
)

ACCOUNT_SUMMARY = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("product_code", pa.string(), nullable=False),
        pa.field("fetched_at", FETCHED_AT, nullable=False),
        *(pa.field(name, AMOUNT) for name in OUTPUT2_FIELDS),
    ]
)

#: Table name → schema, in the order the pipeline writes them.
TABLES: dict[str, pa.Schema] = {
    "asset_categories": ASSET_CATEGORIES,
    "account_summary": ACCOUNT_SUMMARY,
}
