"""Orders: from a footprint to paid, retired credits."""
