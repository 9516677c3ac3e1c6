"""CRM services: records, search and CTI lookup, bulk operations, CSV, seed data, plan impact.

from provisioner.services.crm import records, search
saved = records.create(ctx, actor, "contact", {"name": "田中 太郎"})
search.search(ctx, actor, search.Query(q="田中")).total
"""
