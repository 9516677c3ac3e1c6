"""Where provisioner keeps its data: ``PROVISIONER_HOME`` and the database URL.

Resolution order for the database: ``--db URL``, then
``PROVISIONER_DATABASE_URL``, then ``sqlite:///<home>/provisioner.db`` where
home is ``PROVISIONER_HOME`` or the per-user data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

HOME_VAR = "PROVISIONER_HOME"
DB_VAR = "PROVISIONER_DATABASE_URL"


def home() -> Path:
    value = os.environ.get(HOME_VAR)
    return Path(value).expanduser() if value else Path(platformdirs.user_data_dir("provisioner"))


def database_url(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get(DB_VAR):
        return os.environ[DB_VAR]
    path = home() / "provisioner.db"
    return f"sqlite:///{path}"
