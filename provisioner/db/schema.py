"""The whole schema: every model module imported, so ``metadata`` knows every table.

The model modules import only :mod:`provisioner.db.base` (core tables in
``models.py``, the feature areas' tables in ``crm_models.py`` and
``provisioning_models.py``, ``workflow_models.py``); whoever needs every table at once (Alembic's
``env.py``, the composition root, tests that walk all tables) imports this.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from provisioner.db import crm_models, models, provisioning_models, workflow_models
from provisioner.db.base import Base

MODULES = (models, crm_models, provisioning_models, workflow_models)
metadata: MetaData = Base.metadata
