"""Ready forms for the payments Comuni most often take at the counter: an officer starts from one and adapts it.

Amounts are examples to check against the Comune's own tariffs before publishing (the builder says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from portal.forms_builder.amounts import AmountOption, AmountRule, Reduction
from portal.forms_builder.definition import DebtorMapping, FormDefinition
from portal.forms_builder.fields import FieldSpec


def _payer(cf_label: str = "Codice fiscale", name_label: str = "Nome e cognome") -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("codice_fiscale", cf_label, "fiscal_code", required=True,
                  help="Di chi paga: compare sulla ricevuta."),
        FieldSpec("nome", name_label, "text", required=True, max_length=70),
        FieldSpec("email", "E-mail", "email", help="Facoltativa: vi riceverà il link alla ricevuta."),
    )


_PAYER = DebtorMapping("codice_fiscale", "nome", "email")


@dataclass(frozen=True)
class Template:
    """A ready form, with the taxonomy code that usually goes with it (a hint for the service)."""

    key: str
    name: str
    description: str
    taxonomy_hint: str
    definition: FormDefinition


TEMPLATES: tuple[Template, ...] = (
    Template(
        "certificati", "Diritti di segreteria per certificati",
        "Certificati anagrafici in carta libera o in bollo.", "9/0104103SP/",
        FormDefinition(
            title="Certificato anagrafico",
            intro="Paghi i diritti di segreteria prima di ritirare il certificato allo sportello o di riceverlo "
                  "per posta elettronica.",
            fields=(*_payer(), FieldSpec("tipo_certificato", "Tipo di certificato", "choice", required=True,
                                         choices=("Residenza", "Stato di famiglia", "Nascita", "Cittadinanza",
                                                  "Stato civile", "Contestuale"))),
            amount=AmountRule("choice", options=(AmountOption("In carta libera", 26),
                                                 AmountOption("In bollo", 52))),
            subject_template="Diritti di segreteria – certificato di {tipo_certificato} ({voce})",
            debtor=_PAYER,
        ),
    ),
    Template(
        "mensa", "Ricarica mensa scolastica", "Ricarica del credito pasti di un alunno.", "9/0107101TS/",
        FormDefinition(
            title="Ricarica mensa scolastica",
            intro="Ricarichi il credito dei pasti: l'importo è disponibile dal giorno lavorativo successivo.",
            fields=(*_payer("Codice fiscale del genitore", "Nome e cognome del genitore"),
                    FieldSpec("alunno", "Nome e cognome dell'alunno", "text", required=True, max_length=70),
                    FieldSpec("codice_fiscale_alunno", "Codice fiscale dell'alunno", "fiscal_code", required=True)),
            amount=AmountRule("typed", min_cents=1000, max_cents=50000),
            subject_template="Ricarica mensa – {alunno}",
            debtor=_PAYER,
        ),
    ),
    Template(
        "cosap", "Canone per occupazione occasionale di suolo pubblico",
        "Occupazioni temporanee (ponteggi, traslochi, banchetti) a tariffa giornaliera.", "9/0101107TS/",
        FormDefinition(
            title="Occupazione occasionale di suolo pubblico",
            intro="Per occupazioni fino a 10 m²: la tariffa è giornaliera. Conservi la ricevuta con "
                  "l'autorizzazione.",
            fields=(*_payer(),
                    FieldSpec("luogo", "Via e numero civico dell'occupazione", "text", required=True, max_length=80),
                    FieldSpec("dal", "Primo giorno di occupazione", "date", required=True),
                    FieldSpec("giorni", "Numero di giorni", "number", required=True, min_value=1, max_value=365)),
            amount=AmountRule("quantity", amount_cents=500, quantity_field="giorni"),
            subject_template="Canone suolo pubblico – {luogo} dal {dal} per {giorni} giorni",
            debtor=_PAYER,
        ),
    ),
    Template(
        "cds", "Sanzione al Codice della Strada",
        "Pagamento di un verbale, ridotto del 30% entro 5 giorni dalla contestazione o notifica.", "9/0102100SA/",
        FormDefinition(
            title="Pagamento di un verbale",
            intro="Indichi l'importo scritto sul verbale: se paga entro 5 giorni dalla contestazione o dalla "
                  "notifica, la riduzione del 30% è applicata da sola.",
            fields=(*_payer("Codice fiscale del trasgressore o dell'obbligato", "Nome e cognome"),
                    FieldSpec("verbale", "Numero del verbale", "text", required=True, max_length=30),
                    FieldSpec("notifica", "Data di contestazione o di notifica", "date", required=True),
                    FieldSpec("targa", "Targa del veicolo", "plate", required=True)),
            amount=AmountRule("typed", min_cents=100, max_cents=1000000, reduction=Reduction(30, 5, "notifica")),
            subject_template="Verbale n. {verbale} – targa {targa}",
            debtor=_PAYER,
        ),
    ),
    Template(
        "trasporto", "Trasporto scolastico", "Quota del servizio di scuolabus.", "9/0107101TS/",
        FormDefinition(
            title="Trasporto scolastico",
            fields=(*_payer("Codice fiscale del genitore", "Nome e cognome del genitore"),
                    FieldSpec("alunno", "Nome e cognome dell'alunno", "text", required=True, max_length=70),
                    FieldSpec("anno", "Anno scolastico", "choice", required=True,
                              choices=("2026/2027", "2027/2028"))),
            amount=AmountRule("choice", options=(AmountOption("Quota annuale andata e ritorno", 25000),
                                                 AmountOption("Quota annuale sola andata", 15000),
                                                 AmountOption("Primo quadrimestre", 13000))),
            subject_template="Trasporto scolastico {anno} – {alunno} – {voce}",
            debtor=_PAYER,
        ),
    ),
)


def get(key: str) -> Template | None:
    """The ready form named ``key``."""
    return next((t for t in TEMPLATES if t.key == key), None)
