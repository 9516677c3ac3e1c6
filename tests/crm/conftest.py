"""CRM test fixtures: ``run`` (the command line against the test database) for every module."""

from tests.crm.test_cli import run  # noqa: F401
