"""State machines as transition tables: ``move`` is the only way a status changes."""
from __future__ import annotations

from carbon.core.errors import DomainError


def move(thing, table: dict[str, set[str]], new: str, refused: type[DomainError]) -> None:
    """Set ``thing.status`` to ``new`` if ``table`` allows it from the current state, else raise ``refused``."""
    if new not in table.get(thing.status, set()):
        raise refused(details={"status": [f"{thing.status} → {new}"]})
    thing.status = new
