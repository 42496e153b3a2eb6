"""Project configuration (`erpoa.yaml`)."""

from etl.config.project import ConnectionConfig, ProjectConfig, RunSettings, load_project

__all__ = ["ConnectionConfig", "ProjectConfig", "RunSettings", "load_project"]
