"""Tenant provisioning (REQUIREMENTS A provisioning side, B and E).

Modules: :mod:`groups` (group contracts, cancel), :mod:`auth` (passwords, login,
sessions, switching tenant), :mod:`sandboxes` (sandbox and template tenants),
:mod:`quotas` (disk usage and add-ons), :mod:`rollout` (one bundle to many
tenants), :mod:`billing` (price book and monthly bill), :mod:`metering` (CTI
pop-up calls).
"""
