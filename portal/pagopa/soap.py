"""The paForNode SOAP codec: parse and validate what the node sends us, build what we answer.

SOAP 1.1, document/literal (``sanp/wsdl/paForNode.wsdl``): the ``SOAPAction`` header is the operation name, the
Body holds one element in the paForNode namespace whose children are **unqualified**, and every answer extends
``ctResponse{outcome OK|KO, fault?}`` with ``fault`` a ``ctFaultBean``. Everything is checked against the vendored
``paForNode.xsd`` (which imports ``sac-common-types-1.0.xsd``), loaded once per thread.

XML from outside is parsed with entities left unresolved, no network, no huge trees, and any DOCTYPE refused:
a receipt never needs a DTD, and refusing it closes the entity-expansion and external-entity attacks.

No Flask here: the view in :mod:`portal.pagopa.node` and the receipts poller both use it.
"""

import copy
import re
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache
from zoneinfo import ZoneInfo

from lxml import etree

from portal import timing
from portal.ledger.payments import ReceiptData, ReceiptTransfer
from portal.money import cents_to_decimal_text
from portal.pagopa import SPECS_DIR

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
PAFN_NS = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"
PAFN_XSD = SPECS_DIR / "sanp" / "wsdl" / "xsd" / "paForNode.xsd"
ENVELOPE_XSD = SPECS_DIR / "sanp" / "xsd-common" / "envelope.xsd"
CONTENT_TYPE = "text/xml; charset=utf-8"
#: The node's clock: a ``paymentDateTime`` without an offset is Italian local time.
NODE_TZ = ZoneInfo("Europe/Rome")

# Fault codes (ERR "Ente Creditore › Nodo -> EC"; pagopa-digest.md §4.1).
PAA_SINTASSI_EXTRAXSD = "PAA_SINTASSI_EXTRAXSD"
PAA_SINTASSI_XSD = "PAA_SINTASSI_XSD"
PAA_ID_DOMINIO_ERRATO = "PAA_ID_DOMINIO_ERRATO"
PAA_ID_INTERMEDIARIO_ERRATO = "PAA_ID_INTERMEDIARIO_ERRATO"
PAA_STAZIONE_INT_ERRATA = "PAA_STAZIONE_INT_ERRATA"
PAA_RECEIPT_DUPLICATA = "PAA_RECEIPT_DUPLICATA"
PAA_SEMANTICA = "PAA_SEMANTICA"
PAA_SYSTEM_ERROR = "PAA_SYSTEM_ERROR"

#: ``faultString`` of each code (ERR "Dominio EC"; PAA_RECEIPT_DUPLICATA is not there: pagoPA's GPD uses this).
FAULT_STRINGS = {
    PAA_SINTASSI_EXTRAXSD: "Errore di sintassi extra XSD",
    PAA_SINTASSI_XSD: "Errore di sintassi XSD",
    PAA_ID_DOMINIO_ERRATO: "La PAA non corrisponde al Dominio indicato",
    PAA_ID_INTERMEDIARIO_ERRATO: "Identificativo intermediario non corrispondente",
    PAA_STAZIONE_INT_ERRATA: "Stazione intermediario non corrispondente",
    PAA_RECEIPT_DUPLICATA: "pagamento duplicato",
    PAA_SEMANTICA: "Errore semantico",
    PAA_SYSTEM_ERROR: "Errore generico",
}

_DESCRIPTION_MAX = 1000


@dataclass(frozen=True)
class Operation:
    """One paForNode operation: its ``SOAPAction`` and its request and response elements."""

    name: str
    request: str
    response: str


OPERATIONS = {op.name: op for op in (
    Operation("paVerifyPaymentNotice", "paVerifyPaymentNoticeReq", "paVerifyPaymentNoticeRes"),
    Operation("paGetPayment", "paGetPaymentReq", "paGetPaymentRes"),
    Operation("paGetPaymentV2", "paGetPaymentV2Request", "paGetPaymentV2Response"),
    Operation("paSendRT", "paSendRTReq", "paSendRTRes"),
    Operation("paSendRTV2", "paSendRTV2Request", "paSendRTV2Response"),
    Operation("paDemandPaymentNotice", "paDemandPaymentNoticeRequest", "paDemandPaymentNoticeResponse"),
)}
OPERATIONS_BY_REQUEST = {op.request: op for op in OPERATIONS.values()}
#: The operations that carry a receipt.
RECEIPT_OPERATIONS = frozenset({"paSendRT", "paSendRTV2"})


class SoapFault(Exception):
    """A fault to answer: ``code`` is a PAA_* fault code, ``description`` says what exactly was wrong.

    :param operation: the operation the request was for, when known (the answer is then its response element).
    """

    def __init__(self, code: str, description: str | None = None, *, operation: Operation | None = None):
        self.code = code
        self.description = description
        self.operation = operation
        super().__init__(f"{code}: {description}" if description else code)

    @property
    def fault_string(self) -> str:
        return FAULT_STRINGS.get(self.code, FAULT_STRINGS[PAA_SYSTEM_ERROR])


class XmlRejected(ValueError):
    """The bytes are not well-formed XML, or carry a DOCTYPE."""


@dataclass(frozen=True)
class SoapRequest:
    """A paForNode request that passed the syntax and XSD checks."""

    operation: Operation
    #: The Body's request element (``paSendRTV2Request`` ...).
    element: etree._Element
    id_pa: str
    id_broker_pa: str
    id_station: str

    def payload_xml(self) -> str:
        """The request element as XML text (what a receipt keeps as ``raw_xml``)."""
        return etree.tostring(self.element, encoding="unicode")


# --- Parsing ----------------------------------------------------------------------------------------------------

_local = threading.local()


def _parser() -> etree.XMLParser:
    # Parsers are not shared between threads (gunicorn gthread workers serve requests in threads).
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False, dtd_validation=False,
            remove_comments=True, remove_pis=True,
        )
    return parser


def schema() -> etree.XMLSchema:
    """``paForNode.xsd`` (with the common types it imports), loaded once per thread.

    An lxml ``XMLSchema`` keeps the error log of its last validation on the object, and ``validate`` resets and
    fills it around a call that releases the GIL: two threads validating with one object would mix (or clear) each
    other's errors. So each thread (gunicorn gthread workers serve requests in threads) has its own, and
    validations run in parallel without a lock. Loading it takes a couple of milliseconds.
    """
    compiled = getattr(_local, "schema", None)
    if compiled is None:
        compiled = _local.schema = _load_schema(str(PAFN_XSD))
    return compiled


@cache
def envelope_schema() -> etree.XMLSchema:
    """The SOAP 1.1 envelope schema vendored with the SANP files."""
    return _load_schema(str(ENVELOPE_XSD))


#: Compiling schemas is not thread-safe in libxml2 (its built-in types are set up on first use: threads compiling
#: at once fail with "xmlSchemaPValAttrNodeValue, the given type is not a built-in type"); validating is.
_load_lock = threading.Lock()


def _load_schema(path: str) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    with _load_lock:
        return etree.XMLSchema(etree.parse(path, parser))


def normalize_action(value: str | None) -> str | None:
    """The operation name in a ``SOAPAction`` header: quotes and blanks removed (``"paSendRTV2"`` → ``paSendRTV2``)."""
    if value is None:
        return None
    value = value.strip().strip('"').strip("'").strip()
    return value or None


def parse_xml(data: bytes | str) -> etree._Element:
    """Parse untrusted XML safely.

    :raise XmlRejected: when it is not well-formed, or declares a DOCTYPE (entities, external DTDs).
    """
    if isinstance(data, str):
        # lxml refuses text with an encoding declaration; the text is already decoded, so drop it.
        data = re.sub(r"^\s*<\?xml[^>]*\?>", "", data, count=1).encode("utf-8")
    if not data or not data.strip():
        raise XmlRejected("empty message")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"malformed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlRejected("DOCTYPE not allowed")
    return root


def validate(element: etree._Element, *, operation: Operation | None = None) -> None:
    """Check a paForNode element against the XSD.

    :raise SoapFault: ``PAA_SINTASSI_XSD`` with the first violation as description.
    """
    compiled = schema()
    with timing.phase("xsd"):
        valid = compiled.validate(element)
    if valid:
        return
    errors = [f"line {e.line}: {e.message}" for e in compiled.error_log]
    raise SoapFault(PAA_SINTASSI_XSD, "; ".join(errors)[:_DESCRIPTION_MAX], operation=operation)


def parse_request(body: bytes, soap_action: str | None) -> SoapRequest:
    """Parse a SOAP 1.1 request of the node and check it: well-formed, the right shape, valid against the XSD.

    :raise SoapFault: ``PAA_SINTASSI_EXTRAXSD`` for anything wrong outside the schema (malformed XML, DOCTYPE, not
        a SOAP envelope, unknown body element, ``SOAPAction`` missing or not matching the body);
        ``PAA_SINTASSI_XSD`` when the body element violates ``paForNode.xsd``.
    """
    action = normalize_action(soap_action)
    action_op = OPERATIONS.get(action) if action else None
    try:
        root = parse_xml(body)
    except XmlRejected as exc:
        raise SoapFault(PAA_SINTASSI_EXTRAXSD, str(exc)[:_DESCRIPTION_MAX], operation=action_op) from None
    if root.tag != f"{{{SOAP_ENV_NS}}}Envelope":
        raise SoapFault(PAA_SINTASSI_EXTRAXSD, "not a SOAP 1.1 envelope", operation=action_op)
    bodies = root.findall(f"{{{SOAP_ENV_NS}}}Body")
    if len(bodies) != 1:
        raise SoapFault(PAA_SINTASSI_EXTRAXSD, "the envelope must have one Body", operation=action_op)
    children = [child for child in bodies[0] if isinstance(child.tag, str)]
    if len(children) != 1:
        raise SoapFault(PAA_SINTASSI_EXTRAXSD, "the Body must hold exactly one element", operation=action_op)
    element = children[0]
    qname = etree.QName(element)
    operation = OPERATIONS_BY_REQUEST.get(qname.localname) if qname.namespace == PAFN_NS else None
    if operation is None:
        raise SoapFault(PAA_SINTASSI_EXTRAXSD, f"unknown body element {qname.text}", operation=action_op)
    if action is None:
        raise SoapFault(PAA_SINTASSI_EXTRAXSD, "SOAPAction header missing", operation=operation)
    if action != operation.name:
        raise SoapFault(PAA_SINTASSI_EXTRAXSD,
                        f"SOAPAction {action} does not match the body element {qname.localname}",
                        operation=operation)
    validate(element, operation=operation)
    return SoapRequest(operation=operation, element=element, id_pa=element.findtext("idPA"),
                       id_broker_pa=element.findtext("idBrokerPA"), id_station=element.findtext("idStation"))


#: Placeholder idBrokerPA/idStation of a bare ``receipt`` wrapped for validation (nobody checks them).
_STORED = "receipts-api"


def parse_receipt_payload(xml: bytes | str) -> SoapRequest:
    """Parse a receipt as the receipts API keeps it, and validate it against the XSD.

    Accepted shapes: a paSendRT/paSendRTV2 SOAP envelope, the bare ``paSendRTReq``/``paSendRTV2Request`` element,
    or the bare ``receipt`` element (``ctReceipt``/``ctReceiptV2``). Root elements may come with or without the
    paForNode namespace. A bare ``receipt`` is checked as the receipt of a ``paSendRTV2Request`` (V1 receipts are
    valid V2 receipts: V2 only adds optional elements), with idPA taken from its ``fiscalCode``.

    :raise SoapFault: as :func:`parse_request`.
    """
    try:
        root = parse_xml(xml)
    except XmlRejected as exc:
        raise SoapFault(PAA_SINTASSI_EXTRAXSD, str(exc)) from None
    if root.tag == f"{{{SOAP_ENV_NS}}}Envelope":
        body = root.find(f"{{{SOAP_ENV_NS}}}Body")
        children = [child for child in body if isinstance(child.tag, str)] if body is not None else []
        if len(children) != 1:
            raise SoapFault(PAA_SINTASSI_EXTRAXSD, "the Body must hold exactly one element")
        root = children[0]
    qname = etree.QName(root)
    if qname.namespace not in (None, PAFN_NS):
        raise SoapFault(PAA_SINTASSI_EXTRAXSD, f"not a receipt: {qname.text}")
    if qname.localname == "receipt":
        receipt = copy.deepcopy(root)
        receipt.tag = "receipt"
        operation = OPERATIONS["paSendRTV2"]
        root = etree.Element(f"{{{PAFN_NS}}}{operation.request}", nsmap={"pafn": PAFN_NS})
        _add(root, "idPA", receipt.findtext("fiscalCode") or _STORED)
        _add(root, "idBrokerPA", _STORED)
        _add(root, "idStation", _STORED)
        root.append(receipt)
    else:
        operation = OPERATIONS_BY_REQUEST.get(qname.localname)
        if operation is None or operation.name not in RECEIPT_OPERATIONS:
            raise SoapFault(PAA_SINTASSI_EXTRAXSD, f"not a receipt: {qname.text}")
        if qname.namespace is None:
            root = copy.deepcopy(root)
            root.tag = f"{{{PAFN_NS}}}{qname.localname}"
    validate(root, operation=operation)
    return SoapRequest(operation=operation, element=root, id_pa=root.findtext("idPA"),
                       id_broker_pa=root.findtext("idBrokerPA"), id_station=root.findtext("idStation"))


def to_cents(text: str) -> int:
    """A SOAP amount (``12.34``, exactly two decimals) as integer cents, with no float on the way."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise ValueError(f"invalid amount {text!r}") from None
    cents = value * 100
    if cents != cents.to_integral_value() or value < 0:
        raise ValueError(f"invalid amount {text!r}")
    return int(cents)


_DATE = re.compile(r"^(-?\d{4,}-\d{2}-\d{2})(Z|[+-]\d{2}:\d{2})?$")


def parse_date(text: str | None) -> date | None:
    """An ``xsd:date`` (a timezone suffix, allowed by XSD, is ignored: a date is a date)."""
    if not text:
        return None
    match = _DATE.match(text.strip())
    if not match:
        raise ValueError(f"invalid date {text!r}")
    return date.fromisoformat(match.group(1))


def parse_datetime(text: str | None) -> datetime | None:
    """An ``xsd:dateTime`` as an aware datetime; without an offset it is the node's local time (Europe/Rome)."""
    if not text:
        return None
    text = text.strip()
    extra = timedelta()
    if "T24:00:00" in text:
        # XSD allows 24:00:00 for the end of a day; Python does not.
        text, extra = text.replace("T24:00:00", "T00:00:00"), timedelta(days=1)
    value = datetime.fromisoformat(text) + extra
    return value if value.tzinfo else value.replace(tzinfo=NODE_TZ)


def _subject(element: etree._Element | None) -> tuple[str | None, str | None, str | None]:
    if element is None:
        return None, None, None
    return (element.findtext("uniqueIdentifier/entityUniqueIdentifierType"),
            element.findtext("uniqueIdentifier/entityUniqueIdentifierValue"),
            element.findtext("fullName"))


def receipt_data(request: SoapRequest) -> ReceiptData:
    """The receipt of a validated paSendRT/paSendRTV2 request in ledger terms (cents, aware datetimes).

    :raise SoapFault: ``PAA_SEMANTICA`` for a value the XSD accepts but we cannot read (a date out of range).
    """
    receipt = request.element.find("receipt")
    try:
        debtor_type, debtor_cf, debtor_name = _subject(receipt.find("debtor"))
        payer_type, payer_cf, payer_name = _subject(receipt.find("payer"))
        fee = receipt.findtext("fee")
        transfers = tuple(
            ReceiptTransfer(
                index=int(t.findtext("idTransfer")),
                amount_cents=to_cents(t.findtext("transferAmount")),
                fiscal_code=t.findtext("fiscalCodePA"),
                iban=t.findtext("IBAN"),
                remittance=t.findtext("remittanceInformation") or "",
                category=t.findtext("transferCategory") or "",
                company_name=t.findtext("companyName"),
            )
            for t in receipt.findall("transferList/transfer")
        )
        return ReceiptData(
            receipt_id=receipt.findtext("receiptId"),
            notice_number=receipt.findtext("noticeNumber"),
            iuv=receipt.findtext("creditorReferenceId"),
            org_fiscal_code=receipt.findtext("fiscalCode"),
            outcome=receipt.findtext("outcome"),
            amount_cents=to_cents(receipt.findtext("paymentAmount")),
            description=receipt.findtext("description") or "",
            company_name=receipt.findtext("companyName") or "",
            office_name=receipt.findtext("officeName"),
            fee_cents=to_cents(fee) if fee else None,
            psp_id=receipt.findtext("idPSP"),
            psp_name=receipt.findtext("PSPCompanyName"),
            psp_fiscal_code=receipt.findtext("pspFiscalCode"),
            channel_id=receipt.findtext("idChannel"),
            channel_description=receipt.findtext("channelDescription"),
            payment_method=receipt.findtext("paymentMethod"),
            payment_note=receipt.findtext("paymentNote"),
            payment_at=parse_datetime(receipt.findtext("paymentDateTime")),
            application_date=parse_date(receipt.findtext("applicationDate")),
            transfer_date=parse_date(receipt.findtext("transferDate")),
            debtor_type=debtor_type,
            debtor_fiscal_code=debtor_cf,
            debtor_name=debtor_name,
            payer_type=payer_type,
            payer_fiscal_code=payer_cf,
            payer_name=payer_name,
            stand_in=(receipt.findtext("standIn") or "").strip() in ("true", "1"),
            transfers=transfers,
        )
    except (ValueError, OverflowError) as exc:
        raise SoapFault(PAA_SEMANTICA, str(exc)[:_DESCRIPTION_MAX], operation=request.operation) from None


# --- Building ---------------------------------------------------------------------------------------------------

_NSMAP = {"soapenv": SOAP_ENV_NS, "pafn": PAFN_NS}


def _envelope() -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap=_NSMAP)
    etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Header")
    return envelope, etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body")


def _add(parent: etree._Element, name: str, value) -> etree._Element | None:
    """Append ``<name>value</name>`` (unqualified) unless the value is ``None``."""
    if value is None:
        return None
    child = etree.SubElement(parent, name)
    child.text = value if isinstance(value, str) else str(value)
    return child


def _serialize(envelope: etree._Element) -> bytes:
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def response_element(operation: Operation, fault: SoapFault | None = None, *, fault_id: str = "") -> etree._Element:
    """``<pafn:{operation}Response>`` with outcome OK, or KO and the fault bean."""
    element = etree.Element(f"{{{PAFN_NS}}}{operation.response}", nsmap={"pafn": PAFN_NS})
    _add(element, "outcome", "KO" if fault else "OK")
    if fault is not None:
        bean = etree.SubElement(element, "fault")
        _add(bean, "faultCode", fault.code)
        _add(bean, "faultString", fault.fault_string)
        _add(bean, "id", fault_id or "")
        _add(bean, "description", fault.description)
    return element


@timing.timed("encode")
def build_response(operation: Operation, fault: SoapFault | None = None, *, fault_id: str = "") -> bytes:
    """The SOAP answer to ``operation``: outcome OK, or outcome KO with ``fault`` (an HTTP 200 business answer).

    :param fault_id: ``faultBean.id``: the creditor's fiscal code (idPA) the fault is about.
    """
    envelope, body = _envelope()
    body.append(response_element(operation, fault, fault_id=fault_id))
    return _serialize(envelope)


@timing.timed("encode")
def build_soap_fault(fault: SoapFault, *, server: bool = True, fault_id: str = "") -> bytes:
    """A SOAP 1.1 ``Fault`` (sent with HTTP 500): for errors on our side, so the node keeps the receipt and retries.

    When the operation is known, ``detail`` carries its KO response with the fault bean, so the PAA fault code
    is there for whoever reads it.
    """
    envelope, body = _envelope()
    soap_fault = etree.SubElement(body, f"{{{SOAP_ENV_NS}}}Fault")
    _add(soap_fault, "faultcode", "soapenv:Server" if server else "soapenv:Client")
    _add(soap_fault, "faultstring", f"{fault.code}: {fault.fault_string}")
    if fault.operation is not None:
        detail = etree.SubElement(soap_fault, "detail")
        detail.append(response_element(fault.operation, fault, fault_id=fault_id))
    return _serialize(envelope)


def _add_subject(parent: etree._Element, name: str, kind: str | None, fiscal_code: str | None,
                 full_name: str | None) -> None:
    if not fiscal_code:
        return
    subject = etree.SubElement(parent, name)
    identifier = etree.SubElement(subject, "uniqueIdentifier")
    _add(identifier, "entityUniqueIdentifierType", kind or ("F" if len(fiscal_code) == 16 else "G"))
    _add(identifier, "entityUniqueIdentifierValue", fiscal_code)
    _add(subject, "fullName", full_name or fiscal_code)


def send_rt_element(data: ReceiptData, *, id_pa: str, id_broker_pa: str, id_station: str,
                    version: int = 2) -> etree._Element:
    """A ``paSendRTReq`` (``version=1``) or ``paSendRTV2Request`` element carrying ``data``.

    What the node sends; used by the sandbox, the tests and the benchmark. The result is validated.

    :raise ValueError: when ``data`` lacks something the XSD requires.
    """
    operation = OPERATIONS["paSendRTV2" if version == 2 else "paSendRT"]
    element = etree.Element(f"{{{PAFN_NS}}}{operation.request}", nsmap={"pafn": PAFN_NS})
    _add(element, "idPA", id_pa)
    _add(element, "idBrokerPA", id_broker_pa)
    _add(element, "idStation", id_station)
    receipt = etree.SubElement(element, "receipt")
    _add(receipt, "receiptId", data.receipt_id)
    _add(receipt, "noticeNumber", data.notice_number)
    _add(receipt, "fiscalCode", data.org_fiscal_code)
    _add(receipt, "outcome", data.outcome)
    _add(receipt, "creditorReferenceId", data.iuv)
    _add(receipt, "paymentAmount", cents_to_decimal_text(data.amount_cents))
    _add(receipt, "description", data.description)
    _add(receipt, "companyName", data.company_name)
    _add(receipt, "officeName", data.office_name)
    _add_subject(receipt, "debtor", data.debtor_type, data.debtor_fiscal_code, data.debtor_name)
    transfer_list = etree.SubElement(receipt, "transferList")
    for transfer in data.transfers:
        item = etree.SubElement(transfer_list, "transfer")
        _add(item, "idTransfer", transfer.index)
        _add(item, "transferAmount", cents_to_decimal_text(transfer.amount_cents))
        _add(item, "fiscalCodePA", transfer.fiscal_code)
        if version == 2:
            _add(item, "companyName", transfer.company_name)
        _add(item, "IBAN", transfer.iban)
        _add(item, "remittanceInformation", transfer.remittance)
        _add(item, "transferCategory", transfer.category)
    _add(receipt, "idPSP", data.psp_id)
    _add(receipt, "pspFiscalCode", data.psp_fiscal_code)
    _add(receipt, "PSPCompanyName", data.psp_name)
    _add(receipt, "idChannel", data.channel_id)
    _add(receipt, "channelDescription", data.channel_description)
    _add_subject(receipt, "payer", data.payer_type, data.payer_fiscal_code, data.payer_name)
    _add(receipt, "paymentMethod", data.payment_method)
    if version == 2:
        _add(receipt, "paymentNote", data.payment_note)
    _add(receipt, "fee", cents_to_decimal_text(data.fee_cents) if data.fee_cents is not None else None)
    _add(receipt, "paymentDateTime", data.payment_at.isoformat() if data.payment_at else None)
    _add(receipt, "applicationDate", data.application_date.isoformat() if data.application_date else None)
    _add(receipt, "transferDate", data.transfer_date.isoformat() if data.transfer_date else None)
    if data.stand_in:
        _add(receipt, "standIn", "true")
    try:
        validate(element, operation=operation)
    except SoapFault as exc:
        raise ValueError(f"the receipt does not fit {operation.request}: {exc.description}") from None
    return element


def build_send_rt_request(data: ReceiptData, *, id_pa: str, id_broker_pa: str, id_station: str,
                          version: int = 2) -> bytes:
    """A whole paSendRT/paSendRTV2 SOAP request (see :func:`send_rt_element`); send it with ``SOAPAction``."""
    envelope, body = _envelope()
    body.append(send_rt_element(data, id_pa=id_pa, id_broker_pa=id_broker_pa, id_station=id_station,
                                version=version))
    return _serialize(envelope)


#: The idPA of a probe call (the web workers' warm-up, ``flask doctor``): a valid fiscal-code shape that no
#: creditor has, so the station answers KO ``PAA_ID_DOMINIO_ERRATO`` and stores nothing.
PROBE_ID_PA = "00000000000"


def probe_receipt(*, fiscal_code: str, iuv: str, notice_number: str, amount_cents: int) -> ReceiptData:
    """A receipt valid against the XSD, for the warm-up and probe calls (never a real payment)."""
    return ReceiptData(
        receipt_id="paybox-warm-up", notice_number=notice_number, iuv=iuv, org_fiscal_code=fiscal_code,
        outcome="OK", amount_cents=amount_cents, description="warm-up", company_name="warm-up", fee_cents=0,
        psp_id="WARMUP", psp_name="warm-up", channel_id="WARMUP", channel_description="warm-up",
        payment_method="PO", payment_at=datetime(2000, 1, 1, tzinfo=UTC), application_date=date(2000, 1, 1),
        debtor_fiscal_code=PROBE_ID_PA, debtor_name="warm-up",
        transfers=(ReceiptTransfer(index=1, amount_cents=amount_cents, fiscal_code=fiscal_code,
                                   iban="IT60X0542811101000000123456", remittance="warm-up", category="9/0101101IM/"),),
    )


def probe_request() -> bytes:
    """A paSendRTV2 request for :data:`PROBE_ID_PA`: valid against the XSD, answered KO PAA_ID_DOMINIO_ERRATO."""
    data = probe_receipt(fiscal_code=PROBE_ID_PA, iuv="0" * 17, notice_number="3" + "0" * 17, amount_cents=100)
    return build_send_rt_request(data, id_pa=PROBE_ID_PA, id_broker_pa="00000000000", id_station="00000000000_01")
