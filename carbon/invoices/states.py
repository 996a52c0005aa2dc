"""An invoice request's states: asked, then issued (a fapiao was made out elsewhere) or rejected
(with a reason); a rejected request may be asked again, with the profile as it is then."""
from __future__ import annotations

from enum import StrEnum
from functools import partial

from carbon.core import states
from carbon.core.errors import Conflict


class InvoiceStatus(StrEnum):
    REQUESTED = "requested"
    ISSUED = "issued"
    REJECTED = "rejected"


I = InvoiceStatus
INVOICE_TRANSITIONS: dict[str, set[str]] = {
    I.REQUESTED: {I.ISSUED, I.REJECTED},
    I.ISSUED: set(),
    I.REJECTED: {I.REQUESTED},
}
STATUS_NAMES = {I.REQUESTED: "已申请 / Requested", I.ISSUED: "已开具 / Issued", I.REJECTED: "已驳回 / Rejected"}


class InvoiceTransitionRefused(Conflict):
    code = "invoice.transition_refused"
    message = "发票申请的状态不允许此操作 / Not allowed in the invoice request's current state"


move = partial(states.move, refused=InvoiceTransitionRefused)
