"""Reconciliation reports: one self-contained HTML page, an Excel workbook and CSV files per run."""
