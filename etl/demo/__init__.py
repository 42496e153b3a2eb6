"""Realistic demo ERP (Yonyou U8 style) and OA (Weaver e-cology style) systems; see ``generate``."""
