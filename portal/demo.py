"""Demo data: the Comune di Valleverde with its services, 200 debtors and positions in every status.

Everything goes through the ledger services (``create_position``, ``transition``, ``record_event``) and the
collections' batch code (reminders, litigation and its re-issue, in the month's batch of each service), so the
demo obeys the same rules as real data: valid codici fiscali, IBANs, taxonomy codes and NAVs, TEFA to the
Province on every TARI option, legal status paths only, the amounts the interest and penalty engine computes. The
data is deterministic for a given ``seed`` and day (dates are relative to today so that "overdue" always means
something); only the IUPDs are random.

Plain Python, no Flask: the caller owns the transaction (``flask demo load`` commits).
"""

import logging
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from schwifty import IBAN
from sqlalchemy.orm import Session
from stdnum import luhn
from stdnum.it import codicefiscale

from portal.accounts.models import ROLE_LABELS, Role, User
from portal.accounts.services import create_user
from portal.collections import batches
from portal.collections.models import CollectionBatch, CollectionBatchItem, CollectionPolicy
from portal.collections.settings import seed_legal_rates
from portal.forms_builder import services as forms
from portal.forms_builder import templates as form_templates
from portal.ledger import services as ledger
from portal.ledger import sync_state
from portal.ledger.inputs import DebtorInput, OptionInput, PositionInput, TransferInput
from portal.ledger.models import Creditor, Debtor, PaymentOption, Position, Service
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.types import utcnow
from portal.settings import services as settings_svc

S = PositionStatus
DEFAULT_SEED = 20261126
DEBTOR_COUNT = 200


def _luhn_code(prefix10: str) -> str:
    return prefix10 + luhn.calc_check_digit(prefix10)


# --- The Comune, the Province, their accounts ------------------------------------------------------------------

COMUNE_FISCAL_CODE = _luhn_code("8200347061")
COMUNE_NAME = "Comune di Valleverde"
SEGREGATION_CODE = "12"
POSTAL_ACCOUNT = "001047395826"
TREASURY_IBAN = str(IBAN.generate("IT", bank_code="0306911884", account_code="100000046021"))
#: Poste Italiane (ABI 07601, CAB 03200): the postal IBAN embeds the conto corrente postale.
POSTAL_IBAN = str(IBAN.generate("IT", bank_code="0760103200", account_code=POSTAL_ACCOUNT))
PROVINCE_FISCAL_CODE = _luhn_code("8000215072")
PROVINCE_NAME = "Provincia di Valleverde"
PROVINCE_IBAN = str(IBAN.generate("IT", bank_code="0200805364", account_code="000104417720"))
#: TEFA default rate since 2020 (domain digest §1.9), in percent of TARI.
TEFA_PERCENT = 5
CITY, PROVINCE, CAP = "Valleverde", "VL", "27099"

#: (username, password, role, full name, service code the user is limited to)
_USERS = (
    ("admin", "admin-valleverde", Role.ADMIN, "Giulia Ferraro", None),
    ("operatore", "operatore-valleverde", Role.OPERATOR, "Marco Esposito", None),
    ("consultazione", "consulta-valleverde", Role.VIEWER, "Anna Colombo", None),
    ("mensa", "mensa-valleverde", Role.OPERATOR, "Paola Rinaldi", "MENSA"),
)


@dataclass(frozen=True)
class _ServiceSpec:
    code: str
    name: str
    taxonomy_code: str
    office: str
    default_due_days: int
    postal: bool = False
    draft_first: bool = False
    spontaneous: bool = False
    description: str | None = None


_SERVICES = (
    _ServiceSpec("TARI", "TARI - Tassa sui rifiuti", "9/0101101IM/", "Ufficio Tributi", 60,
                 description="Tassa sui rifiuti dell'anno in corso, con il tributo provinciale TEFA (5%)."),
    _ServiceSpec("IMU", "IMU - Accertamenti", "9/0101100IM/", "Ufficio Tributi", 60, draft_first=True,
                 description="Avvisi di accertamento IMU degli anni precedenti."),
    _ServiceSpec("MENSA", "Mensa scolastica", "9/0107101TS/", "Servizi Scolastici", 30, spontaneous=True,
                 description="Rette mensili della refezione scolastica."),
    _ServiceSpec("MULTE", "Sanzioni codice della strada", "9/0102100SA/", "Polizia Locale", 60, postal=True,
                 description="Verbali di contravvenzione al Codice della Strada."),
    _ServiceSpec("SEGRETERIA", "Diritti di segreteria", "9/0103100TS/", "Sportello Unico Edilizia", 30,
                 spontaneous=True, description="Diritti di segreteria e di istruttoria, copie di atti."),
    _ServiceSpec("CUP", "Canone unico patrimoniale", "9/0101107TS/", "Ufficio Tributi", 30,
                 description="Occupazione di suolo pubblico ed esposizione pubblicitaria."),
    # Paid by citizens from the portal only (no positions of its own in the demo history).
    _ServiceSpec("CERTIFICATI", "Certificati anagrafici", "9/0104103SP/", "Servizi Demografici", 10,
                 spontaneous=True, description="Diritti di segreteria per i certificati anagrafici."),
)
#: The payment forms published on the demo portal: service code → ready template.
_CITIZEN_FORMS = {"CERTIFICATI": "certificati", "MENSA": "mensa"}

#: Share of positions per service (when the status does not dictate the service).
_SERVICE_WEIGHTS = {"TARI": 35, "MENSA": 20, "MULTE": 20, "SEGRETERIA": 10, "CUP": 8, "IMU": 7}
#: Share of positions per status, in percent (each status gets at least one position).
_STATUS_WEIGHTS = {S.DRAFT: 4, S.PUBLISHED: 30, S.PARTIALLY_PAID: 7, S.PAID: 20, S.REPORTED: 17, S.EXPIRED: 8,
                   S.REMINDED: 6, S.IN_LITIGATION: 3, S.CANCELLED: 5}


@dataclass
class DemoResult:
    """What :func:`load` created, for the CLI to report."""

    creditor: Creditor
    position_count: int
    logins: list[tuple[str, str, str]]
    by_status: dict[PositionStatus, int] = field(default_factory=dict)


class DemoAlreadyLoaded(RuntimeError):
    """The demo Comune is already in the database."""


def logins() -> list[tuple[str, str, str]]:
    """The fixed demo accounts as ``(username, password, role label)``, valid whenever the demo was loaded."""
    result = []
    for username, password, role, _, limited_to in _USERS:
        label = ROLE_LABELS[role]
        if limited_to:
            service = next(s for s in _SERVICES if s.code == limited_to)
            label = f"{label} (solo {service.name})"
        result.append((username, password, label))
    return result


def load(session: Session, positions: int = 1000, if_empty: bool = False, seed: int = DEFAULT_SEED,
         now: datetime | None = None) -> DemoResult | None:
    """Create the demo Comune, its accounts, services, users, 200 debtors and ``positions`` positions.

    :param if_empty: do nothing (and return ``None``) when any creditor already exists.
    :param now: the instant the demo is built around (default: now); dates are relative to it.
    :raise DemoAlreadyLoaded: if the demo Comune exists and ``if_empty`` is false.
    """
    if if_empty and session.scalar(sa.select(Creditor.id).limit(1)) is not None:
        return None
    if session.scalar(sa.select(Creditor.id).where(Creditor.fiscal_code == COMUNE_FISCAL_CODE)) is not None:
        raise DemoAlreadyLoaded(f"{COMUNE_NAME} è già presente nel database.")
    builder = _Builder(session, random.Random(seed), now or utcnow())
    builder.setup()
    result = builder.build(positions)
    mark_pagopa_intent(session, result.creditor.id)
    publish_citizen_forms(session, builder.services, builder.users["admin"].id)
    return result


def publish_citizen_forms(session: Session, services: dict[str, Service], admin_id: int) -> None:
    """Publish the demo's payment forms ("Certificato anagrafico", "Ricarica mensa scolastica") on the portal."""
    for code, key in _CITIZEN_FORMS.items():
        template = form_templates.get(key)
        forms.save_draft(session, services[code], template.definition, actor_user_id=admin_id, template_key=key)
        forms.publish(session, services[code], actor_user_id=admin_id)


#: Demo statuses whose positions are on pagoPA (payable there, or paid there).
ON_PAGOPA = (S.PUBLISHED, S.PARTIALLY_PAID, S.PAID, S.REPORTED, S.EXPIRED, S.REMINDED)


def mark_pagopa_intent(session: Session, creditor_id: int) -> None:
    """Say what pagoPA should hold for each demo position, for the sync sweep to push when the demo starts.

    Positions "loaded on pagoPA" must be there (their options paid in Pay Box are marked paid there too, by the
    sync); cancelled or litigated positions that had been published must be invalid there; drafts stay here.
    Nothing is sent now: loading stays fast, and the first sweep of ``make run`` does it in GPD bulk calls.
    """
    sync_state.set_intents(
        session, creditor_id, published=Position.status.in_(ON_PAGOPA),
        invalid=sa.and_(Position.status.in_((S.CANCELLED, S.IN_LITIGATION)), Position.published_at.is_not(None)))


# --- Italian people, companies and addresses -------------------------------------------------------------------

_MALE = (
    "Marco", "Luca", "Giuseppe", "Giovanni", "Antonio", "Francesco", "Alessandro", "Andrea", "Matteo", "Lorenzo",
    "Davide", "Stefano", "Roberto", "Paolo", "Simone", "Federico", "Riccardo", "Gabriele", "Salvatore", "Vincenzo",
    "Mario", "Luigi", "Claudio", "Massimo", "Fabio", "Daniele", "Emanuele", "Tommaso", "Nicola", "Pietro", "Sergio",
    "Alberto", "Enrico", "Giorgio", "Michele", "Filippo", "Domenico", "Carlo", "Angelo", "Raffaele", "Leonardo",
    "Cristian", "Diego", "Edoardo", "Bruno"
)
_FEMALE = (
    "Giulia", "Francesca", "Chiara", "Sara", "Martina", "Valentina", "Alessandra", "Federica", "Elena", "Laura",
    "Silvia", "Anna", "Maria", "Paola", "Roberta", "Giorgia", "Elisa", "Sofia", "Aurora", "Alice", "Beatrice",
    "Camilla", "Cristina", "Daniela", "Eleonora", "Emma", "Ilaria", "Lucia", "Marta", "Monica", "Noemi", "Rita",
    "Serena", "Simona", "Teresa", "Veronica", "Barbara", "Caterina", "Claudia", "Debora", "Giovanna", "Irene",
    "Letizia", "Lorenza", "Manuela"
)
_SURNAMES = (
    "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco", "Bruno",
    "Gallo", "Conti", "De Luca", "Mancini", "Costa", "Giordano", "Rizzo", "Lombardi", "Moretti", "Barbieri",
    "Fontana", "Santoro", "Mariani", "Rinaldi", "Caruso", "Ferrara", "Galli", "Martini", "Leone", "Longo", "Gentile",
    "Martinelli", "Vitale", "Lombardo", "Serra", "Coppola", "De Santis", "D'Angelo", "Marchetti", "Parisi", "Villa",
    "Conte", "Ferraro", "Ferri", "Fabbri", "Bianco", "Marini", "Grasso", "Valentini", "Messina", "Sala", "De Angelis",
    "Gatti", "Pellegrini", "Palumbo", "Sanna", "Farina", "Rizzi", "Monti", "Cattaneo", "Morelli", "Amato",
    "Silvestri", "Mazza", "Testa", "Grassi", "Pellegrino", "Carbone", "Giuliani", "Benedetti", "Barone", "Rossetti",
    "Caputo", "Montanari", "Guerra", "Palmieri", "Bernardi", "Martino", "Fiore", "De Rosa", "Ferretti", "Bellini",
    "Basile", "Riva", "Donati", "Piras", "Vitali", "Battaglia", "Sartori", "Neri", "Costantini", "Milani", "Pagano",
    "Ruggiero", "Sorrentino", "D'Amico", "Orlando", "Negri", "Lo Russo", "Di Stefano", "Nicolò"
)
#: Codici catastali of birth places (a few abroad: Z-codes).
_BIRTH_PLACES = ("H501", "F205", "F839", "L219", "G273", "A944", "D612", "L736", "D969", "A662", "C351", "L781",
                 "G224", "F158", "B157", "E506", "H294", "Z129", "Z100", "Z330", "Z210")
_STREETS = ("Via Roma", "Via Giuseppe Garibaldi", "Corso Vittorio Emanuele II", "Via Giuseppe Mazzini",
            "Piazza del Municipio", "Via Dante Alighieri", "Via XX Settembre", "Via della Repubblica", "Via dei Mille",
            "Viale Europa", "Via Antonio Gramsci", "Via San Francesco", "Via delle Vigne", "Via del Castello",
            "Via Aldo Moro", "Via Papa Giovanni XXIII", "Vicolo del Forno", "Largo della Fontana", "Via Cavour",
            "Via Matteotti", "Via IV Novembre", "Via Alessandro Manzoni", "Via Giacomo Leopardi", "Via dei Tigli",
            "Strada Provinciale 12", "Via Vittorio Veneto", "Via Pietro Nenni", "Via del Lavoro")
_OTHER_CITIES = (("Roma", "RM", "00185"), ("Milano", "MI", "20121"), ("Torino", "TO", "10121"),
                 ("Napoli", "NA", "80121"), ("Bologna", "BO", "40121"), ("Firenze", "FI", "50122"),
                 ("Bergamo", "BG", "24121"), ("Pavia", "PV", "27100"), ("Genova", "GE", "16121"))
_COMPANY_FORMS = ("{s} Costruzioni S.r.l.", "Bar {s} di {n} {s} & C. S.n.c.", "Trattoria da {n} S.r.l.s.",
                  "Ferramenta {s} S.a.s.", "Immobiliare {s} S.p.A.", "Autotrasporti {s} S.r.l.",
                  "Studio Tecnico {s} e Associati", "Farmacia {s} S.n.c.", "Società Cooperativa Valleverde Servizi",
                  "Associazione Sportiva Dilettantistica Valleverde", "Pizzeria {n} S.r.l.", "{s} Impianti S.r.l.",
                  "Edicola {s} di {n} {s}", "Agriturismo Le Vigne di {s} S.r.l.")
_PLACES = ("Scuola primaria G. Rodari", "Scuola primaria A. Manzoni", "Scuola dell'infanzia Il Girasole",
           "Scuola secondaria I grado E. Fermi")
_MONTH_NAMES = ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre",
                "ottobre", "novembre", "dicembre")
#: (article, description, fine in cents)
_VIOLATIONS = (("7", "sosta in zona a traffico limitato", 8300), ("157", "sosta vietata", 4200),
               ("158", "sosta su passo carrabile", 8700), ("142 c.7", "eccesso di velocità fino a 10 km/h", 4200),
               ("142 c.8", "eccesso di velocità oltre 10 km/h", 17300), ("146 c.3", "passaggio con semaforo rosso",
                                                                         16700),
               ("173", "uso del telefono alla guida", 16500), ("172", "mancato uso delle cinture", 8300),
               ("80", "omessa revisione del veicolo", 17300), ("193", "circolazione senza assicurazione", 86600))
_PSPS = (("BCITITMM", "Intesa Sanpaolo", "CP"), ("BPPIITRRXXX", "Poste Italiane", "PO"),
         ("UNCRITMM", "UniCredit", "BBT"), ("CIPBITMM", "Nexi Payments", "CP"),
         ("PPAYITR1XXX", "PayPal", "PPAL"), ("SATYLUL1", "Satispay", "APP"), ("SELBIT2B", "Banca Sella", "CP"),
         ("BPMOIT22XXX", "Banco BPM", "MYBK"), ("ITBBITMM", "Mooney", "PO"))
_CANCEL_REASONS = ("Sgravio: utenza cessata", "Errore di emissione: importo errato", "Annullamento in autotutela",
                   "Duplicato di altra posizione", "Contribuente deceduto: posizione chiusa")


def _ascii_letters(text: str) -> str:
    plain = unicodedata.normalize("NFD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.upper() if ch.isalpha())


def _cf_part(text: str, *, first_name: bool) -> str:
    letters = _ascii_letters(text)
    consonants = [c for c in letters if c not in "AEIOU"]
    vowels = [c for c in letters if c in "AEIOU"]
    if first_name and len(consonants) >= 4:
        consonants = [consonants[0], consonants[2], consonants[3]]
    return "".join(consonants + vowels + ["X", "X", "X"])[:3]


def person_fiscal_code(surname: str, name: str, birth: date, female: bool, place: str) -> str:
    """The codice fiscale of a person (no omocodia), with its check character."""
    day = birth.day + (40 if female else 0)
    body = (f"{_cf_part(surname, first_name=False)}{_cf_part(name, first_name=True)}{birth.year % 100:02d}"
            f"{'ABCDEHLMPRST'[birth.month - 1]}{day:02d}{place}")
    return body + codicefiscale.calc_check_digit(body)


def company_fiscal_code(rng: random.Random) -> str:
    """An 11-digit code valid as a partita IVA (office code 001–100 and Luhn check digit)."""
    prefix = f"{rng.randint(1, 9_999_999):07d}{rng.randint(1, 100):03d}"
    return _luhn_code(prefix)


# --- Building ------------------------------------------------------------------------------------------------


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    days_in_month = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, days_in_month))


def _split(total: int, parts: int) -> list[int]:
    """Split cents in ``parts`` shares, the remainder on the first one."""
    share, rest = divmod(total, parts)
    return [share + rest] + [share] * (parts - 1)


@dataclass
class _Plan:
    """The shape of one position before it is stored."""

    service: Service
    subject: str
    #: Transfers of the whole credit: (amount, TransferInput template without amount).
    parts: list[tuple[int, dict]]
    single: bool
    installments: int
    step_months: int
    source: str = "manual"
    external_id: str | None = None


class _Builder:
    def __init__(self, session: Session, rng: random.Random, now: datetime):
        self.session = session
        self.rng = rng
        self.now = now.astimezone(UTC)
        self.today = self.now.date()
        self.counter = 0
        self.by_status: dict[PositionStatus, int] = {}
        #: The collection batches, one per kind, service and month.
        self.batches: dict[tuple, CollectionBatch] = {}

    # -- set-up

    def setup(self) -> None:
        self._creditor()
        self._users()
        self._debtors()
        self._collection_policies()

    def build(self, count: int) -> DemoResult:
        # Each create_position flushes once at its end; without autoflush its look-ups (external id, debtor)
        # do not flush again, which halves the round trips. They never need the pending rows.
        quiet = logging.getLogger(ledger.__name__)
        level = quiet.level
        quiet.setLevel(max(level, logging.WARNING))  # one INFO line per position and transition is noise here
        try:
            with self.session.no_autoflush:
                self._positions(count)
        finally:
            quiet.setLevel(level)
        for batch in self.batches.values():
            batch.status = "done"
        self.session.flush()
        return DemoResult(self.creditor, sum(self.by_status.values()), logins(), dict(self.by_status))

    def _creditor(self) -> None:
        self.creditor = settings_svc.create_creditor(
            self.session, fiscal_code=COMUNE_FISCAL_CODE, name=COMUNE_NAME, segregation_code=SEGREGATION_CODE,
            department="Settore Economico-Finanziario", cbill_code="AV3R7", postal_account=POSTAL_ACCOUNT,
            postal_authorization="Autorizzato da Poste Italiane S.p.A. Aut. n. DEMO/2026 del 01/01/2026",
            broker_id=COMUNE_FISCAL_CODE, station_id=f"{COMUNE_FISCAL_CODE}_01",
            address="Piazza del Municipio, 1", city=CITY, province=PROVINCE, postal_code=CAP,
            email="tributi@comune.valleverde.example", pec="protocollo@pec.comune.valleverde.example",
            phone="0382 000111", website="https://www.comune.valleverde.example",
            created_at=self.now - timedelta(days=800),
        )
        self.treasury = settings_svc.add_account(self.session, self.creditor, iban=TREASURY_IBAN,
                                           label="Tesoreria comunale - Intesa Sanpaolo")
        self.postal = settings_svc.add_account(self.session, self.creditor, iban=POSTAL_IBAN,
                                         label="Conto corrente postale", is_postal=True)
        self.services: dict[str, Service] = {}
        for spec in _SERVICES:
            service = Service(creditor=self.creditor, code=spec.code, name=spec.name, description=spec.description,
                              taxonomy_code=spec.taxonomy_code, account=self.postal if spec.postal else self.treasury,
                              office=spec.office, default_due_days=spec.default_due_days,
                              draft_first=spec.draft_first, spontaneous=spec.spontaneous)
            self.session.add(service)
            self.services[spec.code] = service
        self.session.flush()

    def _users(self) -> None:
        self.users: dict[str, User] = {}
        for username, password, role, full_name, limited_to in _USERS:
            services = [self.services[limited_to]] if limited_to else None
            self.users[username] = create_user(
                self.session, self.creditor, username=username, full_name=full_name, password=password, role=role,
                email=f"{username}@comune.valleverde.example", services=services,
            )

    def _collection_policies(self) -> None:
        """TARI reminders cost 1,33 € (c.795: ordinary mail) and re-issue the tax as previous years' TARI; the
        other services keep the defaults. The legal-rate table is the migration's (seeded here when empty)."""
        seed_legal_rates(self.session)
        self.session.add(CollectionPolicy(service_id=self.services["TARI"].id, reminder_cost_cents=133,
                                          assessment_taxonomy_code="9/0101109IM/"))
        self.session.flush()

    def collect(self, kind: str, position: Position, at: datetime, user: User) -> CollectionBatchItem:
        """Remind or litigate ``position`` at ``at`` with the real batch code, in the month's batch of its service
        (pagoPA is not asked for anything: :func:`mark_pagopa_intent` leaves that to the sweep)."""
        key = (kind, position.service_id, at.year, at.month)
        batch = self.batches.get(key)
        if batch is None:
            title = f"{batches.KIND_LABELS[kind]} {position.service.name} - {_MONTH_NAMES[at.month - 1]} {at.year}"
            batch = CollectionBatch(creditor_id=self.creditor.id, kind=kind, status="running", title=title[:140],
                                    total=0, done=0, created_by_id=user.id, created_at=at, finished_at=at)
            self.session.add(batch)
            self.batches[key] = batch
        batch.total += 1
        batch.created_at, batch.finished_at = min(batch.created_at, at), max(batch.finished_at, at)
        item = CollectionBatchItem(batch=batch, position_id=position.id)
        self.session.add(item)
        self.session.flush()  # the batch locks and re-reads the position: what the walk changed must be stored
        batches.work(self.session, batch, [item], today=at.date(), now=at, enqueue=False)
        expected = "reminded" if kind == "reminder" else "litigated"
        if item.outcome != expected:
            raise RuntimeError(f"demo: {kind} of position {position.id} refused: {item.message}")
        return item

    def _debtors(self) -> None:
        rng = self.rng
        self.persons: list[Debtor] = []
        self.companies: list[Debtor] = []
        codes: set[str] = set()
        while len(self.persons) + len(self.companies) < DEBTOR_COUNT:
            company = rng.random() < 0.12
            surname, first = rng.choice(_SURNAMES), None
            if company:
                code = company_fiscal_code(rng)
                first = rng.choice(_MALE + _FEMALE)
                name = rng.choice(_COMPANY_FORMS).format(s=surname, n=first)
                kind = "G"
            else:
                female = rng.random() < 0.5
                first = rng.choice(_FEMALE if female else _MALE)
                birth = date(rng.randint(1938, 2004), rng.randint(1, 12), rng.randint(1, 28))
                place = rng.choice(_BIRTH_PLACES[:3]) if rng.random() < 0.3 else rng.choice(_BIRTH_PLACES)
                code = person_fiscal_code(surname, first, birth, female, place)
                name = f"{first} {surname}"
                kind = "F"
            if code in codes:
                continue
            codes.add(code)
            debtor = Debtor(creditor_id=self.creditor.id, kind=kind, fiscal_code=code, name=name, country="IT",
                            created_at=self.now - timedelta(days=rng.randint(420, 1500)))
            if rng.random() >= 0.08:  # a few are known only by their fiscal code
                debtor.street = rng.choice(_STREETS)
                debtor.civic_number = str(rng.randint(1, 120)) + (rng.choice(("", "", "", "/A", "/B", " int. 3")))
                if rng.random() < 0.8:
                    debtor.city, debtor.province, debtor.postal_code = CITY, PROVINCE, CAP
                else:
                    debtor.city, debtor.province, debtor.postal_code = rng.choice(_OTHER_CITIES)
            handle = _ascii_letters(surname).lower()
            if kind == "G":
                debtor.pec = f"{handle}{rng.randint(1, 99)}@pec.example.com"
                if rng.random() < 0.5:
                    debtor.email = f"amministrazione.{handle}@example.com"
            elif rng.random() < 0.45:
                debtor.email = f"{_ascii_letters(first).lower()}.{handle}{rng.randint(1, 99)}@example.com"
            if rng.random() < 0.3:
                debtor.phone = f"3{rng.randint(20, 49)} {rng.randint(1000000, 9999999)}"
            (self.companies if kind == "G" else self.persons).append(debtor)
        self.session.add_all(self.persons + self.companies)
        self.session.flush()
        # A few households and firms owe a lot (a busy citizen page); most owe little.
        self.person_weights = [8 if i < 10 else (3 if i < 40 else 1) for i in range(len(self.persons))]

    # -- positions

    def _status_plan(self, count: int) -> list[PositionStatus]:
        total = sum(_STATUS_WEIGHTS.values())
        counts = {s: count * w // total for s, w in _STATUS_WEIGHTS.items()}
        if count >= len(counts):
            for status in counts:
                counts[status] = max(counts[status], 1)
        counts[S.PUBLISHED] += count - sum(counts.values())
        if counts[S.PUBLISHED] < 0:  # tiny demos: trim from the largest
            counts[S.PUBLISHED] = 0
            while sum(counts.values()) > count:
                counts[max(counts, key=counts.get)] -= 1
        plan = [s for s, n in counts.items() for _ in range(n)]
        self.rng.shuffle(plan)
        return plan

    def _positions(self, count: int) -> None:
        plan = self._status_plan(count)
        # The litigation batch re-issues each position in litigation as an "avviso di accertamento esecutivo":
        # the re-issue counts as one of the published positions.
        for _ in range(min(plan.count(S.IN_LITIGATION), plan.count(S.PUBLISHED))):
            plan.remove(S.PUBLISHED)
        for status in plan:
            self._position(status)

    def _pick_service(self, status: PositionStatus) -> Service:
        rng = self.rng
        if status == S.PARTIALLY_PAID:
            code = rng.choices(("TARI", "IMU", "CUP"), (70, 15, 15))[0]
        elif status == S.IN_LITIGATION:
            code = rng.choices(("TARI", "MULTE", "IMU"), (60, 25, 15))[0]
        elif status == S.DRAFT:
            code = rng.choices(("IMU", "TARI", "CUP", "SEGRETERIA"), (40, 30, 15, 15))[0]
        else:
            code = rng.choices(tuple(_SERVICE_WEIGHTS), tuple(_SERVICE_WEIGHTS.values()))[0]
        return self.services[code]

    def _pick_debtor(self, service: Service) -> Debtor:
        rng = self.rng
        company_share = {"CUP": 0.6, "SEGRETERIA": 0.4, "MULTE": 0.15, "TARI": 0.1, "IMU": 0.1}.get(service.code, 0)
        if self.companies and rng.random() < company_share:
            return rng.choice(self.companies)
        return rng.choices(self.persons, self.person_weights)[0]

    def _layout(self, service: Service, status: PositionStatus) -> tuple[bool, int, int]:
        """Whether there is a single payment, how many installments, and how many months apart."""
        rng = self.rng
        needs_plan = status == S.PARTIALLY_PAID
        if service.code == "TARI":  # ARERA TQRIF: one go and at least two installments
            installments = 0 if (rng.random() < 0.15 and not needs_plan) else rng.choice((2, 2, 3))
            return True, installments, 3 if installments == 3 else 5
        if service.code == "IMU":  # an assessment, sometimes paid by a plan agreed with the office
            if rng.random() < 0.25:
                return False, 4, 1
            return True, 3 if needs_plan or rng.random() < 0.3 else 0, 1
        if service.code == "CUP":
            return True, 2 if needs_plan or rng.random() < 0.2 else 0, 3
        return True, 0, 0

    def _shape(self, service: Service, debtor: Debtor, issued: date, layout: tuple[bool, int, int]) -> _Plan:
        """Subject, amounts and transfers of a new position of ``service`` issued on ``issued``."""
        rng = self.rng
        self.counter += 1
        n, year = self.counter, issued.year
        single, installments, step = layout
        comune: dict = {}
        where = (f"{debtor.street} {debtor.civic_number}" if debtor.street and debtor.city == CITY
                 else f"{rng.choice(_STREETS)} {rng.randint(1, 80)}")
        if service.code == "TARI":
            tari = rng.randint(90_00, 680_00) if debtor.kind == "F" else rng.randint(300_00, 2400_00)
            tefa = round(tari * TEFA_PERCENT / 100)
            use = "utenza domestica" if debtor.kind == "F" else "utenza non domestica"
            province = {"beneficiary_fiscal_code": PROVINCE_FISCAL_CODE, "beneficiary_name": PROVINCE_NAME,
                        "iban": PROVINCE_IBAN, "taxonomy_code": "9/0201102IM/",
                        "remittance": f"TEFA {year} - tributo provinciale per l'ambiente ({TEFA_PERCENT}%)"}
            return _Plan(service, f"TARI {year} - {use} - {where}", [(tari, comune), (tefa, province)],
                         single, installments, step, source="import", external_id=f"TARI-{year}-{n:06d}")
        if service.code == "IMU":
            subject = f"IMU {year - rng.randint(2, 4)} - avviso di accertamento n. {n}/{year}"
            return _Plan(service, subject, [(rng.randint(180_00, 3200_00), comune)], single, installments, step)
        if service.code == "MENSA":
            month = _add_months(issued, -1)
            if month.month in (7, 8):  # no canteen in summer: the bill is June's, sent late
                month = month.replace(month=6, day=1)
            child = f"{rng.choice(_MALE + _FEMALE)} {debtor.name.split(' ', 1)[-1]}"
            subject = (f"Mensa scolastica {_MONTH_NAMES[month.month - 1]} {month.year} - {child} - "
                       f"{rng.choice(_PLACES)}")
            meals, price = rng.randint(8, 22), rng.choice((380, 450, 520))
            return _Plan(service, subject, [(meals * price, comune)], single, installments, step,
                         source="api:mensa", external_id=f"MENSA-{month:%Y%m}-{n:06d}")
        if service.code == "MULTE":
            article, what, fine = rng.choice(_VIOLATIONS)
            letters = "ABCDEFGHJKLMNPRSTVWXYZ"
            plate = (rng.choice(letters) + rng.choice(letters) + f"{rng.randint(100, 999)}" + rng.choice(letters)
                     + rng.choice(letters))
            costs = {"taxonomy_code": "9/0103100TS/", "remittance": f"Spese di notifica verbale n. {n}/{year}/V"}
            return _Plan(service, f"Verbale n. {n}/{year}/V - art. {article} CdS, {what} - targa {plate}",
                         [(fine, comune), (rng.choice((783, 1240, 1550)), costs)], single, installments, step,
                         source="api:polizia-locale", external_id=f"V{year}{n:07d}")
        if service.code == "SEGRETERIA":
            subject, amount = rng.choice((
                ("Diritti di istruttoria SCIA edilizia", rng.choice((5000, 7500, 10000))),
                ("Diritti di segreteria permesso di costruire", rng.choice((15000, 25000, 51600))),
                ("Certificato di destinazione urbanistica", rng.choice((3000, 6000))),
                ("Rilascio copie atti d'archivio", rng.randint(3, 40) * 100 + rng.choice((0, 20, 60))),
                ("Diritti di segreteria autorizzazione paesaggistica", 10000),
            ))
            return _Plan(service, f"{subject} - pratica n. {n}/{year}", [(amount, comune)], single, installments,
                         step)
        if debtor.kind == "G" and rng.random() < 0.5:  # CUP
            subject = f"Canone unico {year} - esposizione pubblicitaria, insegna in {where}"
            amount = rng.randint(120_00, 1400_00)
        else:
            subject = f"Canone unico {year} - occupazione suolo pubblico, {where}"
            amount = rng.randint(40_00, 900_00)
        return _Plan(service, subject, [(amount, comune)], single, installments, step)

    def _option(self, plan: _Plan, share: int, of: int, due: date, description: str | None = None) -> OptionInput:
        transfers = []
        for amount, template in plan.parts:
            part = _split(amount, of)[share]
            transfers.append(TransferInput(amount_cents=part, **template))
        return OptionInput(amount_cents=sum(t.amount_cents for t in transfers), due_date=due, transfers=transfers,
                           description=description)

    def _debtor_input(self, debtor: Debtor) -> DebtorInput:
        return DebtorInput(
            fiscal_code=debtor.fiscal_code, name=debtor.name, kind=debtor.kind, street=debtor.street,
            civic_number=debtor.civic_number, postal_code=debtor.postal_code, city=debtor.city,
            province=debtor.province, country=debtor.country, email=debtor.email, pec=debtor.pec, phone=debtor.phone,
        )

    def _first_due(self, status: PositionStatus, due_days: int) -> date:
        """A first due date that makes ``status`` plausible today."""
        rng, today = self.rng, self.today
        if status == S.DRAFT:
            return today + timedelta(days=rng.randint(max(due_days - 15, 1), due_days))
        if status == S.PUBLISHED:
            if rng.random() < 0.12:  # past due, not yet marked expired
                return today - timedelta(days=rng.randint(1, 45))
            return today + timedelta(days=rng.randint(1, due_days))
        if status == S.PARTIALLY_PAID:
            return today - timedelta(days=rng.randint(-10, 120))
        if status == S.PAID:
            return today - timedelta(days=rng.randint(-due_days // 2, 330))
        if status == S.REPORTED:
            return today - timedelta(days=rng.randint(-10, 350))
        if status == S.EXPIRED:
            return today - timedelta(days=rng.randint(2, 120))
        if status == S.REMINDED:
            return today - timedelta(days=rng.randint(60, 300))
        if status == S.IN_LITIGATION:
            return today - timedelta(days=rng.randint(200, 420))
        return today - timedelta(days=rng.randint(-due_days, 200))  # cancelled

    def _position(self, status: PositionStatus) -> Position:
        rng = self.rng
        service = self._pick_service(status)
        debtor = self._pick_debtor(service)
        layout = self._layout(service, status)
        single, installments, step = layout
        due_days = service.default_due_days
        first_due = self._first_due(status, due_days)
        if installments and status in (S.EXPIRED, S.REMINDED, S.IN_LITIGATION):
            # Overdue means every installment is past due too.
            first_due -= _add_months(first_due, step * (installments - 1)) - first_due
        created = self._at(first_due - timedelta(days=due_days + rng.randint(0, 10)))
        latest = self.now - timedelta(hours=2 if status == S.DRAFT else 24 * 4)
        if created > latest:
            created = self._at(latest.date() - timedelta(days=1))
        plan = self._shape(service, debtor, created.date(), layout)
        options_due = [_add_months(first_due, step * k) for k in range(installments)]
        data = PositionInput(
            service_id=service.id,
            debtor=self._debtor_input(debtor),
            subject=plan.subject,
            single=self._option(plan, 0, 1, first_due) if single else None,
            installments=[self._option(plan, k, installments, due) for k, due in enumerate(options_due)],
            external_id=plan.external_id,
            source=plan.source,
        )
        actor, user_id = self._creator(plan)
        position, _ = ledger.create_position(self.session, self.creditor, data, actor=actor, actor_user_id=user_id,
                                             today=created.date(), created_at=created, enqueue_sync=False)
        _Life(self, position, created).run(status)
        self.by_status[status] = self.by_status.get(status, 0) + 1
        return position

    def _creator(self, plan: _Plan) -> tuple[str, int | None]:
        if plan.source.startswith("api:"):
            return plan.source, None
        user = self.users["admin" if plan.source == "import" else self.rng.choice(("operatore", "admin"))]
        return user.actor, user.id

    def _at(self, day: date, start: int = 7, end: int = 17) -> datetime:
        """A moment of office hours (UTC) on ``day``."""
        moment = datetime.combine(day, time(self.rng.randint(start, end - 1), self.rng.randint(0, 59),
                                            self.rng.randint(0, 59)), tzinfo=UTC)
        return moment

    def reissued(self, item: CollectionBatchItem, at: datetime) -> Position:
        """The assessment the litigation batch wrote for a position: published (as the sync does once GPD has
        it, or the office for a service that publishes by hand) and notified by registered mail."""
        position = self.session.get(Position, item.new_position_id)
        life = _Life(self, position, at)
        life.publish()
        life.notice(channel="raccomandata A/R")
        position.updated_at = life.t
        self.by_status[S.PUBLISHED] = self.by_status.get(S.PUBLISHED, 0) + 1
        return position


class _Life:
    """Walks one position from creation to its target status along legal transitions."""

    def __init__(self, builder: _Builder, position: Position, created: datetime):
        self.b = builder
        self.rng = builder.rng
        self.session = builder.session
        self.position = position
        self.t = created
        self.now = builder.now

    # -- time

    def _advance(self, target: datetime | date, *, min_gap: timedelta = timedelta(minutes=5)) -> datetime:
        """Move the clock to ``target`` (a day means office hours that day), never backwards nor into the future."""
        if isinstance(target, date) and not isinstance(target, datetime):
            target = self.b._at(target)
        latest = max(self.now - timedelta(minutes=1), self.t)
        self.t = min(max(target, self.t + min_gap), latest)
        return self.t

    def _between(self, start: date, end: date) -> date:
        if end <= start:
            return start
        return start + timedelta(days=self.rng.randint(0, (end - start).days))

    # -- steps

    def run(self, status: PositionStatus) -> None:
        position, rng = self.position, self.rng
        options = position.options
        singles = [o for o in options if o.kind == "single"]
        plan = [o for o in options if o.kind == "installment"]
        last_due = max(o.due_date for o in options)
        if status == S.DRAFT:
            position.updated_at = self.t
            return
        if status == S.CANCELLED and (position.service.draft_first or rng.random() < 0.3):
            self._cancel(actor_user="admin")
            return
        self.publish()
        if rng.random() < 0.75:
            self.notice()
        if status == S.PUBLISHED:
            pass
        elif status == S.PARTIALLY_PAID:
            if rng.random() < 0.2 and plan[0].due_date < self.b.today - timedelta(days=10):
                self.expire(plan[0].due_date)
            self.pay([plan[0]], late=True)
        elif status in (S.PAID, S.REPORTED):
            self._pay_in_full(singles, plan, last_due)
            if status == S.REPORTED:
                self.report()
        elif status == S.EXPIRED:
            if plan and rng.random() < 0.15:
                self.pay([plan[0]], late=False)
            self.expire(last_due)
        elif status == S.REMINDED:
            if rng.random() < 0.8:
                self.expire(last_due)
            self.remind(last_due)
        elif status == S.IN_LITIGATION:  # the batch takes only what is wholly unpaid, after the reminder
            self.expire(last_due)
            self.remind(last_due)
            self.litigate()
        elif status == S.CANCELLED:
            if rng.random() < 0.3 and last_due < self.b.today - timedelta(days=5):
                self.expire(last_due)
            self._cancel(actor_user="operatore")
        self._settle_due_date()
        position.updated_at = self.t

    def publish(self) -> None:
        position = self.position
        if position.service.draft_first:
            user = self.b.users["operatore"]
            self._advance(self.t + timedelta(hours=self.rng.randint(2, 72)))
            ledger.transition(self.session, position, S.PUBLISHED, actor=user.actor, actor_user_id=user.id, at=self.t)
        else:
            self._advance(self.t + timedelta(minutes=self.rng.randint(1, 30)))
            ledger.transition(self.session, position, S.PUBLISHED, actor="system", at=self.t, channel="gpd")

    def notice(self, channel: str | None = None) -> None:
        position = self.position
        channel = channel or self.rng.choice(("posta ordinaria", "posta ordinaria", "email", "PEC", "app IO"))
        if channel == "PEC" and not position.debtor.pec:
            channel = "posta ordinaria"
        if channel == "email" and not position.debtor.email:
            channel = "app IO" if position.debtor.kind == "F" else "posta ordinaria"
        self._advance(self.t + timedelta(days=self.rng.randint(0, 3), hours=self.rng.randint(1, 6)))
        position.notice_issued_at = self.t
        ledger.record_event(self.session, position, "notice_issued", actor="system", at=self.t, channel=channel,
                            batch=f"AVVISI-{self.t:%Y%m%d}-{position.service.code}")

    def _receipt(self, option: PaymentOption) -> dict:
        psp_id, psp_name, method = self.rng.choice(_PSPS)
        return {
            "psp_id": psp_id, "psp_name": psp_name, "payment_method": method,
            "receipt_id": f"{self.rng.getrandbits(128):032x}",
            "iuv": option.iuv, "notice_number": option.notice_number, "amount_cents": option.amount_cents,
            "installment_number": option.installment_number,
        }

    def pay(self, options: list[PaymentOption], *, late: bool) -> None:
        """Receive pagoPA receipts for ``options`` (in order), moving the position as each one arrives."""
        position = self.position
        for option in options:
            window_end = option.due_date + timedelta(days=self.rng.randint(5, 45) if late else 0)
            day = self._between(self.t.date() + timedelta(days=1), min(window_end, self.b.today))
            self._advance(self.b._at(day, 6, 22))
            option.status = OptionStatus.PAID
            option.paid_at = self.t
            position.paid_cents += option.amount_cents
            for other in position.options:
                if other.kind != option.kind and other.status == OptionStatus.UNPAID:
                    other.status = OptionStatus.CANCELLED  # the single payment and the plan exclude each other
            done = all(o.status != OptionStatus.UNPAID for o in position.options)
            target = S.PAID if done else S.PARTIALLY_PAID
            if position.status == target:
                ledger.record_event(self.session, position, "installment_paid", actor="pagopa", at=self.t,
                                    **self._receipt(option))
            else:
                ledger.transition(self.session, position, target, actor="pagopa", at=self.t, **self._receipt(option))
        self._settle_due_date()

    def _pay_in_full(self, singles, plan, last_due: date) -> None:
        rng, today = self.rng, self.b.today
        if plan and (not singles or (rng.random() < 0.35 and last_due <= today)):
            if rng.random() < 0.15 and plan[0].due_date < today - timedelta(days=20):
                self.expire(plan[0].due_date)
            self.pay(plan, late=True)
            return
        single = singles[0]
        roll = rng.random()
        if roll < 0.12 and single.due_date < today - timedelta(days=30):
            self.expire(single.due_date)
            if rng.random() < 0.4:
                self.remind(single.due_date)
        self.pay([single], late=roll < 0.3)

    def expire(self, due: date) -> None:
        self._advance(datetime.combine(due + timedelta(days=1), time(2, 0), tzinfo=UTC))
        ledger.transition(self.session, self.position, S.EXPIRED, actor="system", at=self.t,
                          due_date=due.isoformat())

    def remind(self, due: date) -> None:
        self._advance(due + timedelta(days=self.rng.randint(30, 50)))
        self.b.collect("reminder", self.position, self.t, self.b.users["operatore"])

    def litigate(self) -> None:
        self._advance(self.t.date() + timedelta(days=self.rng.randint(60, 120)))
        item = self.b.collect("litigation", self.position, self.t, self.b.users["admin"])
        self.b.reissued(item, self.t + timedelta(minutes=self.rng.randint(20, 300)))

    def _cancel(self, actor_user: str) -> None:
        user = self.b.users[actor_user]
        self._advance(self.t + timedelta(days=self.rng.randint(1, 40)))
        ledger.transition(self.session, self.position, S.CANCELLED, actor=user.actor, actor_user_id=user.id,
                          at=self.t, reason=self.rng.choice(_CANCEL_REASONS))
        self._cancel_unpaid()
        self.position.updated_at = self.t

    def _cancel_unpaid(self) -> None:
        for option in self.position.options:
            if option.status == OptionStatus.UNPAID:
                option.status = OptionStatus.CANCELLED

    def report(self) -> None:
        paid = [o for o in self.position.options if o.status == OptionStatus.PAID]
        self._advance(self.t + timedelta(days=self.rng.randint(1, 3), hours=self.rng.randint(1, 5)))
        psp_id = self.rng.choice(_PSPS)[0]
        ledger.transition(self.session, self.position, S.REPORTED, actor="pagopa", at=self.t,
                          flow_id=f"{self.t:%Y-%m-%d}{psp_id}-S{self.rng.randint(10**8, 10**9 - 1)}",
                          regulation_date=self.t.date().isoformat(), iuvs=[o.iuv for o in paid])

    def _settle_due_date(self) -> None:
        """The position's due date is the earliest due date of what is still unpaid."""
        unpaid = [o.due_date for o in self.position.options if o.status == OptionStatus.UNPAID]
        if unpaid:
            self.position.due_date = min(unpaid)


__all__ = ["DemoAlreadyLoaded", "DemoResult", "company_fiscal_code", "load", "logins", "mark_pagopa_intent",
           "person_fiscal_code"]
