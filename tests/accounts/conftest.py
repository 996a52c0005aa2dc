"""The live service fixture of the payment tests."""
from tests.payments.conftest import live  # noqa: F401
