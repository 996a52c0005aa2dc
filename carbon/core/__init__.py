"""Pieces every area shares: settings, database, errors, units, clock, ids."""
