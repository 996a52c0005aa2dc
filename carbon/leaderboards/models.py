"""The SQL index of the leaderboards: one row per board and guest, derived from the retirements."""
from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from carbon.core.db import db


class LeaderboardScore(db.Model):
    """A guest's grams on one board (``g:all:all``, ``s12:week:2026-W49`` …). Written only from the
    retirements by carbon.leaderboards.service; rebuildable at any time."""

    __tablename__ = "leaderboard_scores"
    __table_args__ = (Index("ix_leaderboard_scores_rank", "board", "grams", "user_id"),)

    board: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    grams: Mapped[int] = mapped_column(BigInteger)


class LeaderboardScoreCount(db.Model):
    """How many guests have exactly ``grams`` on a board, kept beside ``leaderboard_scores`` so that
    a rank (guests above) and a board's size cost one row per distinct score, not one per guest."""

    __tablename__ = "leaderboard_score_counts"

    board: Mapped[str] = mapped_column(String(40), primary_key=True)
    grams: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guests: Mapped[int] = mapped_column(Integer)
