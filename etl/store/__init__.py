"""The reconciliation store: runs, entity runs, watermarks, quarantine, cross-reference, differences."""
