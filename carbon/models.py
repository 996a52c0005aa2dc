"""Imports every model so the metadata (and alembic's autogenerate) sees them all."""
from carbon.accounts.models import AuthSession, User  # noqa: F401
from carbon.footprint.models import Footprint  # noqa: F401
from wechat.models import WeChatCredential  # noqa: F401
