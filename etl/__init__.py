"""erp-oa-sync: batch synchronizer of master data between an ERP and an OA system."""

__version__ = "0.1.0"
