"""Persistence: SQLAlchemy 2 typed models, engines, migrations."""
