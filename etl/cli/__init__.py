"""The `erpoa` command line."""
