"""The "legacy" noise model: a second error model for the district generator, written apart from the
field model in ``generate.py`` (other rates, other error types), so matching is not calibrated on the
same noise it is judged on.

It turns one person into one source system's copy of their Patient fields, the way data typed, scanned
and passed through spreadsheets in Indonesian health offices looks: OCR-like confusions, one-digit NIK
typos (mostly in the serial), a NIK on some records only, spreadsheet damage (scientific notation, a
15-significant-digit float, 15/17 digits), names with a token dropped, only the first token, given and
family names swapped, old (pre-1972) spelling, spelling variants, all caps and honorifics, placeholder
birth dates (1 January, 1970-01-01, 1900-01-01), day and month swapped, sex or birth date missing, phone
numbers without their leading zero. Household members share a phone through ``Person.phone``.

Every error applied is named in the record's labels (``"<type>"`` or ``"<type>:<kind>"``), and
``stats`` counts, per type, the records it could apply to and the records it was applied to, so tests
and the evaluation can see each type at its rate. Types and rates: ``RATES``.

Spelling variants are produced from the variant table of ``shared/names.py`` (knowledge of which
variants exist); nothing here copies how matching compares names.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shared.names import NAME_VARIANTS
from tools.dataset import tables as T

# Probability of each error type among the records it can apply to (see ``eligible`` in ``LegacyNoise``).
RATES: dict[str, float] = {
    "nik-absent": 0.15,            # the person's own NIK left off this record
    "nik-typo": 0.05,              # one digit wrong: serial 80 %, birth-date part 20 %
    "nik-ocr": 0.025,              # a digit read as a letter: 0/O, 1/I/l, 5/S, 8/B
    "nik-spreadsheet": 0.04,       # scientific notation, float precision, 15 or 17 digits
    "name-variant": 0.5,           # a word with a known spelling variant written in that variant
    "name-old-spelling": 0.06,     # u -> oe, j -> dj, c -> tj, y -> j in one word
    "name-typo": 0.08,             # one keyboard slip in one word
    "name-ocr": 0.025,             # a letter read as a digit: O/0, I/1, l/1, S/5, B/8
    "name-token-dropped": 0.07,    # one word left out (names of 2+ words)
    "name-first-only": 0.05,       # only the first word kept ("Siti" for "Siti Rahayu")
    "name-swapped": 0.06,          # last word first ("Siregar Maruli")
    "name-caps": 0.45,             # ALL CAPS
    "name-honorific": 0.25,        # Bpk./Ibu/Tn./Ny./An./H./Hj. in front
    "birthdate-missing": 0.08,
    "birthdate-placeholder": 0.05,  # 1 January of the year 60 %, 1970-01-01 20 %, 1900-01-01 20 %
    "birthdate-day-month-swap": 0.05,  # dates whose day is 1-12 and differs from the month
    "gender-missing": 0.07,
    "phone-leading-zero-dropped": 0.1,  # a phone written as a number: 812... instead of 0812...
}
PHONE_SHOWN = 0.65          # a record carries the person's (or household's) phone when they have one
ADDRESS_SHOWN = 0.85
PLACEHOLDER_DATES = (date(1970, 1, 1), date(1900, 1, 1))

NIK_OCR = {"0": "O", "1": "I", "5": "S", "8": "B"}
NIK_OCR_ALTERNATIVE = {"1": "l"}
NAME_OCR = {"O": "0", "o": "0", "I": "1", "l": "1", "S": "5", "s": "5", "B": "8"}
# Keys next to each other on a keyboard (letters only): what a slip puts instead.
KEYBOARD = {"a": "sq", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj", "i": "uo",
            "j": "hk", "k": "jl", "l": "k", "m": "n", "n": "bm", "o": "ip", "p": "o", "r": "et", "s": "ad",
            "t": "ry", "u": "yi", "w": "qe", "y": "tu", "z": "x"}
HONORIFICS = {"male": ("Bpk.", "Tn.", "Bapak", "H.", "Sdr."), "female": ("Ibu", "Ny.", "Nn.", "Hj.", "Sdri."),
              "child": ("An.",)}
OLD_SPELLING = (("u", "oe"), ("j", "dj"), ("c", "tj"), ("y", "j"))
# canonical (lower case) -> variants, from the table matching knows (a variant is written, not compared)
_VARIANTS = {canonical: tuple(v for v in variants if v != canonical and len(v) > 2)
             for canonical, variants in NAME_VARIANTS.items()}


@dataclass
class LegacyFields:
    """One record's demographic fields as a legacy system holds them, and the errors in them."""

    nik: str | None                   # the value written under the NIK system (None: left off)
    name: dict
    gender: str | None
    birth_date: str | None
    phone: str | None
    address: dict | None
    labels: list[str] = field(default_factory=list)


class LegacyNoise:
    def __init__(self, rng: random.Random, as_of: date):
        self.rng = rng
        self.as_of = as_of
        self.stats: dict[str, dict[str, int]] = {kind: {"eligible": 0, "applied": 0} for kind in RATES}

    # ------------------------------------------------------------------ draws
    def hit(self, kind: str, labels: list[str], detail: str | None = None) -> bool:
        """Draws the error ``kind`` for a record it can apply to; records it in ``labels`` and ``stats``."""
        self.stats[kind]["eligible"] += 1
        if self.rng.random() >= RATES[kind]:
            return False
        self.stats[kind]["applied"] += 1
        labels.append(kind if detail is None else f"{kind}:{detail}")
        return True

    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    # ------------------------------------------------------------------ one record
    def fields(self, person: Any, *, nik: str | None, own_nik: bool, name: dict | None,
               keep_demographics: bool) -> LegacyFields:
        """``person``: the generator's ``Person``; ``nik``: the NIK this record should carry (the
        person's, a mother's, or a wrongly typed one), ``own_nik``: it is the person's own; ``name``:
        a name already made (a baby's "By. Ny. ..."), else one is made from the person's words."""
        labels: list[str] = []
        shown_nik = self.nik(nik, own_nik, labels) if nik else None
        human = self.baby_name(name, labels) if name is not None else self.name(person, labels)
        gender = person.gender
        birth = person.birth_date
        birth_text: str | None = birth.isoformat()
        if not keep_demographics:
            if self.hit("gender-missing", labels):
                gender = None
            if self.hit("birthdate-missing", labels):
                birth_text = None
            else:
                placeholder = self.placeholder(birth, labels)
                if placeholder is not None:
                    birth_text = placeholder.isoformat()
                elif birth.day <= 12 and birth.day != birth.month and self.hit("birthdate-day-month-swap", labels):
                    birth_text = date(birth.year, birth.day, birth.month).isoformat()
        phone = None
        if person.phone and self.rng.random() < PHONE_SHOWN:
            phone = self.phone(person.phone, labels)
        address = self.address(person) if self.rng.random() < ADDRESS_SHOWN else None
        return LegacyFields(shown_nik, human, gender, birth_text, phone, address, labels)

    # ------------------------------------------------------------------ NIK
    def nik(self, value: str, own_nik: bool, labels: list[str]) -> str | None:
        if own_nik and self.hit("nik-absent", labels):
            return None
        if self.rng.random() < 0.8:
            if self.hit("nik-typo", labels, "serial"):
                value = self.one_digit(value, range(12, 16))
        elif self.hit("nik-typo", labels, "date"):
            value = self.one_digit(value, range(6, 12))
        if self.hit("nik-ocr", labels):
            value = self.nik_ocr(value)
        damaged = self.spreadsheet(value, labels)
        return damaged if damaged is not None else value

    def one_digit(self, value: str, positions: range) -> str:
        i = self.pick(list(positions))
        digit = self.pick([d for d in "0123456789" if d != value[i]])
        return value[:i] + digit + value[i + 1:]

    def nik_ocr(self, value: str) -> str:
        positions = [i for i, ch in enumerate(value) if ch in NIK_OCR]
        if not positions:
            return value
        for i in self.rng.sample(positions, min(len(positions), self.rng.choice((1, 1, 2)))):
            letter = NIK_OCR_ALTERNATIVE.get(value[i]) if self.rng.random() < 0.3 else None
            value = value[:i] + (letter or NIK_OCR[value[i]]) + value[i + 1:]
        return value

    def spreadsheet(self, value: str, labels: list[str]) -> str | None:
        if not value.isdigit():
            self.stats["nik-spreadsheet"]["eligible"] += 1   # a letter in it: no number to damage
            return None
        kind = self.pick(("sci", "precision", "15-digits", "17-digits"))
        if not self.hit("nik-spreadsheet", labels, kind):
            return None
        if kind == "sci":            # what a spreadsheet shows for a 16-digit number in a General cell
            return f"{int(value):.5E}"
        if kind == "precision":      # stored as a float: 15 significant digits, the last one lost
            return value[:15] + "0"
        i = self.rng.randrange(len(value))
        if kind == "15-digits":
            return value[:i] + value[i + 1:]
        return value[:i] + value[i] + value[i:]

    # ------------------------------------------------------------------ names
    def name(self, person: Any, labels: list[str]) -> dict:
        words = list(person.words)
        words = [self.variant(w, labels) for w in words]
        if self.rng.random() < 0.5:       # draw the rarer spelling errors in a random word
            words = self.spelling_errors(words, labels)
        else:
            words = self.spelling_errors(words[::-1], labels)[::-1]
        family = person.has_family
        if len(words) >= 2 and self.hit("name-first-only", labels):
            words = words[:1]
            family = False
        elif len(words) >= 2 and self.hit("name-token-dropped", labels):
            del words[self.rng.randrange(len(words))]
            family = family and len(words) >= 2 and words[-1] == person.words[-1]
        if len(words) >= 2 and self.hit("name-swapped", labels):
            words = [words[-1]] + words[:-1]
            family = False
        age = (self.as_of - person.birth_date).days // 365
        prefix = []
        if self.hit("name-honorific", labels):
            prefix = [self.pick(HONORIFICS["child" if age < 15 else person.gender])]
        text = " ".join(prefix + words)
        if self.hit("name-caps", labels):
            text = text.upper()
            words = [w.upper() for w in words]
        human: dict = {"use": "official", "text": text}
        if self.rng.random() < 0.4:       # some systems also split the name (after any swap: as typed)
            if family and len(words) >= 2:
                human["family"], human["given"] = words[-1], words[:-1]
            else:
                human["given"] = words
        return human

    def baby_name(self, name: dict, labels: list[str]) -> dict:
        text = name["text"]
        if self.hit("name-caps", labels):
            text = text.upper()
        return {**name, "text": text}

    def variant(self, word: str, labels: list[str]) -> str:
        variants = _VARIANTS.get(word.lower())
        if not variants:
            return word
        if self.hit("name-variant", labels):
            return self.pick(variants).capitalize()
        return word

    def spelling_errors(self, words: list[str], labels: list[str]) -> list[str]:
        words = list(words)
        old = [i for i, w in enumerate(words) if any(a in w.lower() for a, _ in OLD_SPELLING)]
        if old and self.hit("name-old-spelling", labels):
            i = self.pick(old)
            pairs = [(a, b) for a, b in OLD_SPELLING if a in words[i].lower()]
            a, b = self.pick(pairs)
            words[i] = _replace_keep_case(words[i], a, b)
        long_words = [i for i, w in enumerate(words) if len(w) >= 4]
        if long_words and self.hit("name-typo", labels):
            i = self.pick(long_words)
            words[i] = self.typo(words[i])
        ocr = [i for i, w in enumerate(words) if any(ch in NAME_OCR for ch in w)]
        if ocr and self.hit("name-ocr", labels):
            i = self.pick(ocr)
            positions = [j for j, ch in enumerate(words[i]) if ch in NAME_OCR]
            j = self.pick(positions)
            words[i] = words[i][:j] + NAME_OCR[words[i][j]] + words[i][j + 1:]
        return words

    def typo(self, word: str) -> str:
        i = self.rng.randrange(1, len(word))
        kind = self.rng.randrange(3)
        if kind == 0 and word[i].lower() in KEYBOARD:          # a neighbouring key
            return word[:i] + self.pick(KEYBOARD[word[i].lower()]) + word[i + 1:]
        if kind == 1 and i < len(word) - 1:                      # two letters transposed
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        return word[:i] + word[i + 1:]                           # a letter left out

    # ------------------------------------------------------------------ dates, phone, address
    def placeholder(self, birth: date, labels: list[str]) -> date | None:
        roll = self.rng.random()
        kind = "jan1" if roll < 0.6 else "1970" if roll < 0.8 else "1900"
        if not self.hit("birthdate-placeholder", labels, kind):
            return None
        return date(birth.year, 1, 1) if kind == "jan1" else PLACEHOLDER_DATES[kind == "1900"]

    def phone(self, phone: str, labels: list[str]) -> str:
        if self.hit("phone-leading-zero-dropped", labels):
            return phone[1:]
        style = self.rng.randrange(4)
        if style == 1:
            return "62" + phone[1:]
        if style == 2:
            return f"{phone[:4]}-{phone[4:8]}-{phone[8:]}"
        return phone

    def address(self, person: Any) -> dict:
        kec_name, postal, _ = T.KECAMATAN[person.kecamatan]
        line = self.pick((f"Dsn. {person.dusun} RT {person.rt}/RW {person.rw}, Ds. {person.desa}",
                          f"{person.dusun.upper()} {person.rt:02d}/{person.rw:02d} {person.desa.upper()}",
                          f"Dusun {person.dusun}, {person.desa}, Kec. {kec_name}"))
        address: dict = {"use": "home", "text": line, "line": [line], "district": kec_name, "country": "ID"}
        if self.rng.random() < 0.5:
            address["postalCode"] = postal
        return address


def _replace_keep_case(word: str, old: str, new: str) -> str:
    i = word.lower().index(old)
    piece = word[i:i + len(old)]
    replacement = new.upper() if piece.isupper() else new.capitalize() if piece[:1].isupper() else new
    return word[:i] + replacement + word[i + len(old):]
