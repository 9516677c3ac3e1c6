"""provisioner: configuration copy and tenant provisioning for multi-tenant CRM products.

A tenant's configuration (labels, checkboxes, memo fields, picklists,
classifications, custom databases, workflows, blueprints, roles, input rules,
settings) is one immutable, versioned document. It travels between tenants as
a signed DSSE bundle, delivered with a one-time copy key that the receiving
tenant's admin generated, and is applied only after that admin reviews the
plan and approves it.
"""

__version__ = "0.1.0"
