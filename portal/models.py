"""Import every model module so that Alembic and ``db.create_all`` see all tables."""

from portal.accounts.api_tokens import ApiToken, api_token_services  # noqa: F401
from portal.accounts.models import LoginAttempt, User, user_services  # noqa: F401
from portal.api.idempotency import IdempotencyKey  # noqa: F401
from portal.citizen_payments.models import CitizenPayment, CitizenPaymentItem  # noqa: F401
from portal.collections.history import SettingChange  # noqa: F401
from portal.collections.models import (  # noqa: F401
    CollectionBatch,
    CollectionBatchItem,
    CollectionPolicy,
    LegalRate,
    Reminder,
)
from portal.forms_builder.models import PaymentForm  # noqa: F401
from portal.imports.models import Import, ImportMapping, ImportRowError  # noqa: F401
from portal.jobs.models import JobRecord, SchedulerHeartbeat  # noqa: F401
from portal.ledger.flows import ReportedPayment, ReportingAnomaly, ReportingFlow  # noqa: F401
from portal.ledger.models import (  # noqa: F401
    Account,
    Creditor,
    Debtor,
    Event,
    NumberCounter,
    OfflinePayment,
    PaymentOption,
    Position,
    Receipt,
    Service,
    Transfer,
)
from portal.notices.models import BillRun, BillRunChunk, BillRunItem, NoticeDelivery  # noqa: F401
from portal.ratelimit import RateCounter  # noqa: F401
from portal.webhooks import events as _webhook_events  # noqa: F401,E402  (registers the session listener)
from portal.webhooks.models import (  # noqa: F401,E402
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscriber,
    webhook_subscriber_services,
)
