"""Receipts (a PDF per paid order) and invoices: an organization's invoice profile and its requests
for fapiao, which are issued outside the platform and recorded here (decision 0017)."""
