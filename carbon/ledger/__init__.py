"""The append-only double-entry ledger (CNY and kg)."""
