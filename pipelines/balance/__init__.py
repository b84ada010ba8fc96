"""The balance domain: output1 layouts, table schemas, flattening and storage."""
