"""Reconciliation (对账): compare ERP, OA and the target, persist the differences, sign them off.

- `etl.reconcile.compare`: the pure, vectorised comparison (`compare_entity`);
- `etl.reconcile.run`: reading the databases, `reconcile_entity` (after a publish) and `reconcile_fresh`;
- `etl.reconcile.store`: `erpoa_difference` persistence across runs and sign-off.
"""

from etl.reconcile.compare import CLASSES, compare_entity

__all__ = ["CLASSES", "compare_entity"]
