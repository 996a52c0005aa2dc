"""Credit projects and (later) their inventory, reservations and retirements."""
