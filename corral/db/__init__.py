"""Corral's state: SQLAlchemy models for teams, API keys and sandboxes, and the migrated database handle."""

from corral.db.engine import Database, open_database
from corral.db.models import AdminKey, ApiKey, AuditEntry, Base, SandboxRecord, SnapshotRecord, Team, TeamQuota
from corral.db.volume_models import SandboxVolumeMount, VolumeRecord

__all__ = ["AdminKey", "ApiKey", "AuditEntry", "Base", "Database", "SandboxRecord", "SandboxVolumeMount",
           "SnapshotRecord", "Team", "TeamQuota", "VolumeRecord", "open_database"]
