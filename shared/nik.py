"""NIK (Nomor Induk Kependudukan) toolkit: normalise, validate, decode, cross-check, tokenise. Pure.

Layout of the 16 digits: ``PP KK CC DDMMYY SSSS`` = province, regency/city, district where the NIK was
first registered, birth date (women add 40 to the day), serial.

Decisions:
- Formatting noise from legacy systems is removed: whitespace, ``.``, ``-``, ``/``, ``_``, a ``NIK``
  prefix (any case, optional ``:``/``.``/``=``), surrounding quotes and Excel's text apostrophe.
- Numbers that went through a float (``3201014501900001.0``, ``3.201014501900001E+15``) are accepted
  only when the digits are provably exact: every digit down to the units is written out and the value
  is at most 2**53 (above that a float64 cannot hold every integer, so province codes 91-96 that went
  through a float may be off by one). Anything else is rejected as ``non-digit``.
- 15 or 17 digits are ``wrong-length``; no digit is ever added or removed. A dropped leading zero is not
  the cause (no province code starts with 0), so there is no safe repair.
- Province codes are the 38 codes of Kepmendagri 100.1.1-6117/2022 plus the 2022 laws creating the
  Papua provinces (public lists, e.g. the KPU 2024 region table): 11-19, 21, 31-36, 51-53, 61-65,
  71-76, 81-82, 91-96. Regency and district codes ``00`` do not exist either.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

NIK_LENGTH = 16

PROVINCE_CODES = frozenset(
    {"11", "12", "13", "14", "15", "16", "17", "18", "19",  # Sumatra
     "21",  # Kepulauan Riau
     "31", "32", "33", "34", "35", "36",  # Java
     "51", "52", "53",  # Bali, Nusa Tenggara
     "61", "62", "63", "64", "65",  # Kalimantan
     "71", "72", "73", "74", "75", "76",  # Sulawesi
     "81", "82",  # Maluku
     "91", "92", "93", "94", "95", "96"}  # Papua (93-96 since 2022)
)

REASONS = ("empty", "non-digit", "wrong-length", "all-zeros", "impossible-date", "bad-region")

# Largest integer a float64 holds exactly together with all its neighbours.
_FLOAT_EXACT_LIMIT = 2**53

_PREFIX = re.compile(r"^nik\s*[:.=#-]?\s*", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s.\-/_]+")
_FLOAT_TAIL = re.compile(r"^([0-9]+)\.0+$")
_SCIENTIFIC = re.compile(r"^[0-9]+(\.[0-9]+)?[eE]\+?[0-9]+$")
_DIGITS = re.compile(r"^[0-9]+$")
# Longest raw value read as a possible NIK: 16 digits with generous legacy noise. Anything longer is
# not a NIK, and is refused before any work proportional to its length.
_MAX_RAW_LENGTH = 64
_QUOTES = "\"'`\u2018\u2019\u201c\u201d"


class NikError(ValueError):
    """A value that cannot be a NIK. ``reason`` is one of ``REASONS``; the message never holds the value."""

    def __init__(self, reason: str):
        assert reason in REASONS, reason
        super().__init__(f"invalid NIK: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Nik:
    value: str
    province: str
    regency: str
    district: str
    birth_day: int  # already minus 40 for women
    birth_month: int
    birth_yy: int
    sex: Literal["male", "female"]
    serial: str


def _from_float_notation(text: str) -> str | None:
    """Digits of ``1234.0`` / ``1.234E+3`` when exact (see module doc); None when not such a number."""
    tail = _FLOAT_TAIL.match(text)
    if tail:
        digits = tail.group(1)
    elif _SCIENTIFIC.match(text):
        number = Decimal(text)
        # A positive exponent means the digits stop before the units place: the rest was lost.
        if number.as_tuple().exponent > 0 or number != number.to_integral_value():
            raise NikError("non-digit")
        if number.adjusted() >= NIK_LENGTH:  # too many digits for a NIK (and for int->str, past ~4300)
            raise NikError("wrong-length")
        digits = str(int(number))
    else:
        return None
    if len(digits) > NIK_LENGTH or int(digits) > _FLOAT_EXACT_LIMIT:
        raise NikError("non-digit")
    return digits


def normalise_nik(raw: str | int) -> str:
    """The 16 digits of a NIK written with legacy noise, or ``NikError`` (format reasons only)."""
    if raw is None:
        raise NikError("empty")
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise NikError("non-digit")  # floats included: their digits cannot be trusted
    if isinstance(raw, int) and not 0 <= raw < 10**NIK_LENGTH:
        raise NikError("wrong-length")  # also keeps str() of a huge int (a ValueError past ~4300 digits) away
    if len(raw if isinstance(raw, str) else "") > _MAX_RAW_LENGTH:
        raise NikError("wrong-length")
    text = str(raw).strip().strip(_QUOTES).strip()
    text = _PREFIX.sub("", text).strip().strip(_QUOTES).strip()
    if not text:
        raise NikError("empty")
    digits = _from_float_notation(text)
    if digits is None:
        digits = _SEPARATORS.sub("", text)
        if not digits:
            raise NikError("empty")
        if not _DIGITS.match(digits):
            raise NikError("non-digit")
    if set(digits) == {"0"}:
        raise NikError("all-zeros")
    if len(digits) != NIK_LENGTH:
        raise NikError("wrong-length")
    return digits


def _is_real_date(day: int, month: int, yy: int) -> bool:
    if not 1 <= month <= 12 or day < 1:
        return False
    return any(day <= calendar.monthrange(century + yy, month)[1] for century in (1900, 2000))


def parse_nik(raw: str | int) -> Nik:
    """Normalise, validate and decode a NIK; raises ``NikError``."""
    value = normalise_nik(raw)
    province, regency, district = value[0:2], value[2:4], value[4:6]
    if province not in PROVINCE_CODES or regency == "00" or district == "00":
        raise NikError("bad-region")
    coded_day, month, yy = int(value[6:8]), int(value[8:10]), int(value[10:12])
    if 1 <= coded_day <= 31:
        day, sex = coded_day, "male"
    elif 41 <= coded_day <= 71:
        day, sex = coded_day - 40, "female"
    else:
        raise NikError("impossible-date")
    if not _is_real_date(day, month, yy):
        raise NikError("impossible-date")
    return Nik(value=value, province=province, regency=regency, district=district, birth_day=day,
               birth_month=month, birth_yy=yy, sex=sex, serial=value[12:16])


_FHIR_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def nik_consistency(nik: Nik, birth_date: str | None, gender: str | None) -> list[str]:
    """Mismatches between a decoded NIK and a Patient's ``birthDate``/``gender``; [] if consistent or unknown.

    Only what is known is compared: a ``YYYY`` birth date checks the two-digit year, ``YYYY-MM`` adds
    the month. ``other``/``unknown``/missing gender and unparseable dates are unknown, not mismatches.
    """
    problems = []
    match = _FHIR_DATE.match(birth_date.strip()) if isinstance(birth_date, str) else None
    if match:
        year, month, day = match.groups()
        if (int(year) % 100 != nik.birth_yy
                or (month is not None and int(month) != nik.birth_month)
                or (day is not None and int(day) != nik.birth_day)):
            problems.append("nik-birthdate-mismatch")
    if isinstance(gender, str) and gender.strip().lower() in ("male", "female"):
        if gender.strip().lower() != nik.sex:
            problems.append("nik-gender-mismatch")
    return problems


def nik_token(nik: str | int, key: bytes | str) -> str:
    """Keyed, stable token of a NIK for storage keys and logs: HMAC-SHA256 of the normalised NIK, 32 hex.

    ``key`` may also be a pydantic ``SecretStr`` (``Settings.nik_hash_key``).
    """
    if hasattr(key, "get_secret_value"):
        key = key.get_secret_value()
    key_bytes = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if not key_bytes:
        raise ValueError("nik_token needs a non-empty key")
    digest = hmac.new(key_bytes, normalise_nik(nik).encode("ascii"), hashlib.sha256).hexdigest()
    return digest[:32]
