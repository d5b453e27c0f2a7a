"""Translatable texts of the layers that do not import Flask (the domain, the services).

They call :func:`gettext` (imported as ``_``) on their Italian source texts, and mark module-level constants with
:func:`N_`; ``make translations`` extracts both into ``translations/messages.pot`` with the templates' texts. The
app factory plugs Flask-Babel in (:func:`install`), so a text a citizen reads follows the language of the page;
without it (a job, a script, a test of the domain alone) the Italian source text comes back unchanged.

Texts that are stored (timeline events, sync errors, e-mails sent by jobs) stay in Italian: they are data, not
the page's wording, and are not passed through here.

``python -m portal.i18n prepare translations`` (run by ``make translations`` after the update) completes the
source-language catalogue (Italian: every translation is its source text) and readies the others to compile.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

#: The translator of the running application (``None``: Italian source texts).
_translator: Callable[[str], str] | None = None


def install(translator: Callable[[str], str] | None) -> None:
    """Use ``translator`` (message id → text in the current language) from now on; ``None`` uninstalls."""
    global _translator
    _translator = translator


def gettext(message: str, **values) -> str:
    """``message`` in the current language, with ``%(name)s`` placeholders filled from ``values``."""
    text = _translator(message) if _translator is not None else message
    return text % values if values else text


_ = gettext


def N_(message: str) -> str:  # noqa: N802  (the name gettext tools know)
    """Mark ``message`` for extraction without translating it now (translate it with :func:`gettext` when shown)."""
    return message


def prepare_catalogues(directory: str, source: str = "it") -> list[str]:
    """Make the catalogues under ``directory`` ready to compile, after ``pybabel init``/``update``.

    The ``source`` language's catalogue gets every untranslated or fuzzy message's source text (it is complete
    by definition); every catalogue loses the "fuzzy" mark ``pybabel init`` puts on its header, so a language
    only initialised compiles too (its untranslated texts fall back to Italian). Returns one line per catalogue.
    """
    from pathlib import Path

    from babel.messages.pofile import read_po, write_po

    lines = []
    for path in sorted(Path(directory).glob("*/LC_MESSAGES/messages.po")):
        language = path.parent.parent.name
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language)
        filled = 0
        for message in catalog:
            if not message.id:
                continue
            complete = _translated(message)
            if language == source and not complete:
                if message.pluralizable:
                    ids = tuple(message.id)
                    message.string = tuple(ids[min(i, len(ids) - 1)] for i in range(catalog.num_plurals))
                else:
                    message.string = message.id
                message.flags.discard("fuzzy")
                filled += 1
        catalog.fuzzy = False
        translated = sum(1 for m in catalog if m.id and _translated(m))
        with path.open("wb") as handle:
            write_po(handle, catalog, width=120)
        lines.append(f"{language}: {translated} of {sum(1 for m in catalog if m.id)} messages translated"
                     + (f" ({filled} given their source text)" if filled else ""))
    return lines


def _translated(message) -> bool:
    strings = message.string if message.pluralizable else (message.string,)
    return all(strings) and not message.fuzzy


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "prepare":
        sys.exit("usage: python -m portal.i18n prepare translations")
    print("\n".join(prepare_catalogues(sys.argv[2])))
