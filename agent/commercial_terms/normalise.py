"""One form for every way of writing the same thing: NFKC, invisible characters dropped,
lower case, no accents, number words as digits, identifiers and business hours taken out."""

from __future__ import annotations

import contextlib
import re
import unicodedata

from text_to_num import alpha2digit

from core.lead_fields import fold as fold_accents

# Every currency sign of the Basic Multilingual Plane (R$, US$, €, £, ¥, ₹...); NFKC has
# already turned the fullwidth "＄" into "$".
_CURRENCY_SYMBOLS = "".join(chr(code) for code in range(0x10000) if unicodedata.category(chr(code)) == "Sc")
_CUR = f"[{re.escape(_CURRENCY_SYMBOLS)}]"

# "SE 3000" and "FB-300" are model names, not 3.000 or 300 of anything.
_MODEL_CODE = re.compile(
    r"\b(?!(?:BRL|USD|EUR|GBP|CEP|CPF|EM|DE|DO|DA|DOS|DAS|POR|ATE|COM|SEM|SAO|PARA|PRA|OU|AS|OS|NO|NA|NOS|NAS|"
    r"SAI|FICA|DIA|SO|MAIS|UNS|CADA|TEM|SAEM|UMAS|APOS)\b)([A-Z]{2,4})[ -](\d{3,5})\b(?![.,]\d)"
)
# text2num reads accented words only; a model sometimes drops the accents.
_UNACCENTED_NUMBER_WORDS = {
    "tres": "três",
    "milhao": "milhão",
    "milhoes": "milhões",
    "bilhao": "bilhão",
    "bilhoes": "bilhões",
    "virgula": "vírgula",
}
_UNACCENTED_RE = re.compile(r"\b(" + "|".join(_UNACCENTED_NUMBER_WORDS) + r")\b")
# "45 mil", "1,2 milhão", "30k": one shorthand token, kept away from text2num, which would
# turn "45 mil" into "45 1000".
_SHORTHAND = re.compile(r"(\d)\s*(?:mil|milhão|milhões|mi|bi|bilhão|bilhões|k)\b")
_PERCENT_WORDS = re.compile(r"\bpor\s*cento\b")
_WEEKDAY_NAMES = (
    r"(?:segunda|terça|terca|quarta|quinta|sexta|sábado|sabado|domingo|seg|ter|qua|qui|sex|sáb|sab|dom)"
)
# "de segunda a sexta" is when the team works, not a delivery date.
_WEEKDAY_RANGE = re.compile(
    rf"\b{_WEEKDAY_NAMES}(?:-feira)?s?\s+(?:a|à|até|ate|e)\s+{_WEEKDAY_NAMES}(?:-feira)?s?\b"
)
_WEEKEND_HOURS = re.compile(r"\baos\s+(?:sábados|sabados|domingos|feriados)\b")
# A bare "quinta" after "na"/"até" is Thursday; text2num would read it as "5ª".
_BARE_WEEKDAY = re.compile(
    r"\b(na|nesta|nessa|próxima|proxima|até|ate|dia|pra|para|toda|desde|já na|ja na)\s+"
    r"(segunda|terça|terca|quarta|quinta|sexta)\b(?!-)"
)
_ORDINAL = re.compile(r"(?<!\d)\d+[ªº]")

# Contact details and identifiers: digits that are never a price or a deadline.
_IDENTIFIERS = re.compile(
    r"(?<!\S)[^\s@]+@\S+|https?://\S+|www\.\S+"
    r"|\+?55\s*\(?\d{2}\)?\s*9?\s?\d{4}[-\s.]?\d{4}"
    r"|\(\d{2}\)\s*9?\s?\d{4}[-\s.]?\d{4}"
    r"|\b\d{2}\s9?\d{4}-\d{4}\b|\b9?\d{4}-\d{4}\b"
    r"|\b0800[\s-]?\d{3}[\s-]?\d{4}\b|\b0300[\s-]?\d{3}[\s-]?\d{4}\b"
    r"|\b\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}\b|\b\d{3}\.\d{3}\.\d{3}-\d{2}\b"
    r"|\bcep:?\s*\d{5}-?\d{3}\b|\b\d{5}-\d{3}\b"
)
# Clock times and opening hours ("das 8h às 18h", "às 14h30", "08:00-18:00").
_CLOCK = r"\d{1,2}(?::\d{2}|\s?h\s?\d{0,2}|\s?hs\b|\s?horas\b)?"
_CLOCK_MARKED = r"\d{1,2}(?::\d{2}|\s?h\s?\d{0,2}|\s?hs\b|\s?horas\b)"
_HOURS = re.compile(
    rf"\b(?:das|a partir das|ate as|as)\s+{_CLOCK}\s*(?:as|a|ate|-)\s*{_CLOCK}"
    rf"|\bde\s+{_CLOCK_MARKED}\s*(?:as|a|ate|-)\s*{_CLOCK_MARKED}"
    rf"|\b(?:a partir das|ate as|as|das)\s+{_CLOCK_MARKED}"
    rf"|\b\d{{1,2}}:\d{{2}}(?:\s*-\s*\d{{1,2}}:\d{{2}})?"
    r"|\bhorario (?:comercial|de atendimento)"
)
_DIGIT_LETTER = re.compile(r"(\d)([a-z])")


def normalise(text: str) -> str:
    """The reply in one form: lower case, no accents, digits for numbers, no identifiers."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = _MODEL_CODE.sub(r"\1\2", text)
    text = text.lower()
    text = _IDENTIFIERS.sub(" ", text)
    text = _UNACCENTED_RE.sub(lambda m: _UNACCENTED_NUMBER_WORDS[m.group(1)], text)
    text = _PERCENT_WORDS.sub("%", text)
    text = _SHORTHAND.sub(r"\1 kmil", text)
    text = _WEEKDAY_RANGE.sub(" horario ", text)
    text = _WEEKEND_HOURS.sub(" horario ", text)
    text = _BARE_WEEKDAY.sub(r"\1 \2-feira", text)
    # An unusual sequence of number words raises: then the text is read as written.
    with contextlib.suppress(ValueError):
        text = alpha2digit(text, "pt", threshold=0)
    text = _ORDINAL.sub(" ordinal ", text)
    text = fold_accents(text).replace("kmil", "mil")
    text = _HOURS.sub(" horario ", text)
    text = _DIGIT_LETTER.sub(r"\1 \2", text)
    return re.sub(r"[ \t\r\f\v]+", " ", text).strip()
