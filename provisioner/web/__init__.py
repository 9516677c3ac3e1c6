"""HTTP: the JSON API (``/api``) and the web console, served by ``provisioner serve``."""

from __future__ import annotations

from provisioner.web.app import create_app

__all__ = ["create_app"]
