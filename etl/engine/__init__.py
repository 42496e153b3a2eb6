"""The sync engine: extract and map into staging, merge and gate, publish in one transaction."""
