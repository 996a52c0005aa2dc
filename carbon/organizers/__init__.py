"""Organizations, their members and API keys; the admin audience."""
