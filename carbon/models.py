"""Imports every model so the metadata (and alembic's autogenerate) sees them all."""
from carbon.accounts.models import AuthSession, User  # noqa: F401
from carbon.certificates.models import (  # noqa: F401
    Certificate,
    CertificateCounter,
    CertificateImage,
    ChainEntry,
    ChainHead,
)
from carbon.checkout.models import IdempotencyKey, InboxEntry, Order, Payment, Refund  # noqa: F401
from carbon.credits.models import (  # noqa: F401
    Project,
    Reservation,
    Retirement,
    SerialBlock,
    Vintage,
)
from carbon.footprint.models import Footprint  # noqa: F401
from carbon.invoices.models import InvoiceProfile, InvoiceRequest  # noqa: F401
from carbon.jobs.models import OutboxEvent  # noqa: F401
from carbon.leaderboards.models import LeaderboardScore, LeaderboardScoreCount  # noqa: F401
from carbon.ledger.models import LedgerTransaction, Posting  # noqa: F401
from carbon.organizers.models import ApiKey, Organization, Organizer, OrganizerSession  # noqa: F401
from carbon.scenes.models import Scene, SceneChannel, SceneDailyStat  # noqa: F401
from wechat.models import WeChatCredential  # noqa: F401
