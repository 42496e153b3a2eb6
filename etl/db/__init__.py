"""Database access: engines, chunked extraction, bulk writes and upserts per dialect."""
