"""Leaderboards: guests ranked by the kilograms retired in their name (see service.py)."""
