"""Names shared across the services: the forms of tenant slugs and login ids, the operator.

A leaf module (it imports nothing of the package), so that any service can use
these without importing :mod:`provisioner.services.tenants` and what it builds on.
"""

from __future__ import annotations

import re

#: a tenant slug (also a tenant group's code): lowercase letters, digits, hyphens
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: a login id
LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
#: the actor recorded for operator commands (no acting user: whoever runs the CLI)
OPERATOR = "operator"
