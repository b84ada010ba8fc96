"""The data root behind one seam: a local directory or an s3:// prefix, and atomic files."""
