"""The red-team district: an evaluation set written apart from ``generate.py``, ``noise_legacy.py`` and
``lookalike.py`` (own name tables, own noise, own mix; none of their code), to judge matching PRECISION on
what Indonesian legacy health data holds and the team's generators may not.

Different people who look alike, each pattern a group (``GROUP_WEIGHTS``, labels in ``CASE_LABELS``):
- families sharing one address and one phone, children with near-identical names born about two years apart
  ("Muhammad Rizki" / "Muhammad Rizky"), one child's record sometimes carrying a sibling's NIK with one serial
  digit changed (a clerk copying the line above on the KK);
- patronymics: "Ahmad bin Yusuf" (the son; "Ahmad" on some records) and his father "Yusuf bin Hasan"
  ("Yusuf" on some), same address; and juniors: a son with exactly his father's name;
- Javanese elderly mononyms ("Sutrisno", "Suparmi") of one village with placeholder or partial birth dates
  (year only, 1 July, 31 December, the 15th), often without a NIK;
- twins with the same name on every record (or names differing in one letter), multipleBirth missing,
  NIK serials consecutive (one digit apart) when both have one;
- a mother's NIK typed under the NIK system on her child's record (a toddler with a real name and the
  child's birth date), and the mother's own records;
- a household's KK number (16 digits, a valid-looking NIK whose date is the KK's issue date) typed in the
  NIK field of several members;
- a health cadre's phone typed on the records of many unrelated people of the village;
- Balinese birth-order names (I Wayan / Ni Made / I Nyoman / I Ketut + one name shared by many) and
  Chinese-Indonesian families (generation names "Lie Siu Ling" / "Lie Siu Lan", Indonesian names on
  some records).
Every person has 1-3 records (the ordinary ones up to 5) with their own noise (``RATES``): transliteration
variants, "M." for Muhammad, dropped words, caps and honorifics, typos; NIK absent, a digit wrong, two
digits transposed, an Excel apostrophe; birth date missing, year only, a day or a year off, day/month
swapped; sex missing; phones in four formats. Every error is a label in the record's ``noise``.

Written in the generator's layout (``DIR/bulk|stream/Patient.ndjson``, ``manifest.json``,
``ground_truth.json``: ``patients`` {id: person, case, source, has_nik, load, nik_kind, noise[, collides_with]}
and ``persons``), seeded: the same seed and size give the same bytes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from shared.config import Settings
from tools.dataset.generate import NdjsonWriter, PatientInfo, empty_dataset_dir

AS_OF = date(2025, 3, 31)
PROVINCE, REGENCY = "33", "10"         # a Central Java regency; kecamatan codes below
KECAMATAN = {"01": "Prambanan", "02": "Gantiwarno", "03": "Wedi", "04": "Bayat", "05": "Cawas", "06": "Trucuk"}
DESA = ("Kebondalem", "Sengon", "Kemudo", "Joho", "Taji", "Pereng", "Krakitan", "Jambakan", "Nanggulan")
DUSUN = ("Krajan", "Ngasem", "Dukuh", "Sidomulyo", "Karanganyar", "Tegalsari")
SYSTEMS = ("simrs", "simpus", "pcare", "sikda", "lab")
CARE = {"male": ("Bpk.", "Tn.", "Sdr."), "female": ("Ibu", "Ny.", "Sdri."), "child": ("An.",)}

MALE_ISLAMIC = ("Muhammad Rizki", "Ahmad Fauzi", "Muhammad Iqbal", "Abdul Rahman", "Muhammad Fajar",
                "Ahmad Syaiful", "Yusuf", "Muhammad Ilham", "Khairul Anam", "Muhammad Hafiz")
FEMALE_ISLAMIC = ("Siti Nur Aisyah", "Nur Aini", "Siti Fatimah", "Nurul Hidayah", "Siti Khodijah",
                  "Aisyah Putri", "Dewi Sartika", "Siti Zulaikha")
JAVANESE_MONONYM = {"male": ("Sutrisno", "Sukirno", "Paimin", "Sumarno", "Tukimin", "Slamet", "Wagiman"),
                    "female": ("Suparmi", "Tukiyem", "Sumiyati", "Painem", "Sarinah", "Wagiyem", "Suginem")}
BALI_ORDER = ("Wayan", "Made", "Nyoman", "Ketut")
BALI_NAMES = ("Sudarsana", "Suarta", "Artawan", "Sukerta", "Sri Wahyuni", "Ariani", "Suastika")
CHINESE_SURNAME = ("Lie", "Tan", "Liem", "Oei", "Go", "The")
CHINESE_GENERATION = (("Siu", ("Ling", "Lan", "Hwa", "Bing")), ("Swie", ("King", "Kiong", "Hok")),
                      ("Kok", ("Liang", "Lian", "Tjoan")))
INDONESIAN_FOR_CHINESE = {"Lie": "Lianto", "Tan": "Tanoto", "Liem": "Salim", "Oei": "Wijaya", "Go": "Gunawan",
                          "The": "Tedjo"}
PLAIN_NAMES = {"male": ("Budi Santoso", "Agus Setiawan", "Eko Prasetyo", "Dwi Cahyono", "Hendra Gunawan",
                        "Joko Susilo", "Bambang Sutejo"),
               "female": ("Sri Lestari", "Endang Wahyuni", "Rina Marlina", "Yuni Astuti", "Tri Handayani",
                          "Wahyu Ningsih", "Puji Rahayu")}
# Spellings of one name in Indonesian records (transliteration of Arabic, old and new spelling).
TRANSLITERATION = {"Muhammad": ("Mohammad", "Muhamad", "Mochammad", "Moch.", "M."), "Ahmad": ("Achmad", "Akhmad"),
                   "Rizki": ("Rizky", "Rizqi", "Risky"), "Yusuf": ("Yusup", "Jusuf"), "Syaiful": ("Saiful",),
                   "Khairul": ("Chairul", "Choirul"), "Nur": ("Noor", "Nurr"), "Aisyah": ("Aisah", "Aisyiah"),
                   "Fatimah": ("Fatimah", "Fatima"), "Khodijah": ("Khadijah", "Hadijah"), "Hafiz": ("Hafidz",),
                   "Sutrisno": ("Soetrisno",), "Sukirno": ("Soekirno",), "Suparmi": ("Soeparmi",),
                   "Sumiyati": ("Sumiati",), "Tukiyem": ("Tukiem",), "Abdul": ("Abd.",), "Iqbal": ("Ikbal",)}
# Names of siblings a family gives: one letter apart, or the same first word.
SIBLING_PAIRS = {"male": (("Muhammad Rizki", "Muhammad Rizky"), ("Ahmad Fauzi", "Ahmad Fauzan"),
                          ("Muhammad Hasan", "Muhammad Husein"), ("Rizal", "Risal")),
                 "female": (("Nur Aini", "Nur Aina"), ("Siti Nur Aisyah", "Siti Nur Azizah"),
                            ("Dewi Lestari", "Dewi Listari"))}

RATES = {   # the duplicate noise: probability per record (the first record of a person is clean)
    "name-transliteration": 0.35, "name-muhammad-abbrev": 0.1, "name-word-dropped": 0.07, "name-typo": 0.05,
    "name-caps": 0.4, "name-honorific": 0.15, "nik-absent": 0.25, "nik-digit": 0.04, "nik-transposed": 0.02,
    "nik-apostrophe": 0.04, "birthdate-missing": 0.07, "birthdate-year-only": 0.03, "birthdate-day-off": 0.02,
    "birthdate-year-off": 0.02, "birthdate-day-month-swap": 0.03, "gender-missing": 0.05,
}
GROUP_WEIGHTS = {"ordinary": 30, "family": 18, "patronymic": 7, "junior": 4, "mononyms": 8, "twins": 7,
                 "child-on-mother-nik": 8, "kk-in-nik": 6, "cadre-phone": 4, "balinese": 6, "chinese": 5}
CASE_LABELS = {
    "rt-single": "an ordinary person's only record", "rt-duplicate": "an ordinary person with 2-5 records; merge",
    "rt-parent": "a parent of a family sharing address and phone; never merge with another member",
    "rt-sibling": "a child of such a family; a sibling has a near-identical name, born about 2 years apart",
    "rt-sibling-nik-typo": "a child's record carrying a sibling's NIK with one serial digit changed "
                           "(collides_with: that sibling)",
    "rt-patronymic": "father and son 'X bin Y' / 'Y bin Z' of one household, shortened names on some records",
    "rt-junior": "a son with exactly his father's name, of one household",
    "rt-mononym": "elderly Javanese mononyms of one village, placeholder or partial birth dates",
    "rt-twin": "twins with one name (or one letter apart), same birth date, no multipleBirth, "
               "consecutive NIK serials; copies of one twin merge, the two never",
    "rt-child-mother-nik": "a toddler whose record carries the mother's NIK under the NIK system "
                           "(collides_with: the mother), the child's own name and birth date",
    "rt-mother": "the mother of such a child", "rt-kk-member": "a household member whose NIK field holds the KK "
                                                               "number on some records",
    "rt-cadre-phone": "unrelated villagers whose records carry one health cadre's phone",
    "rt-balinese": "Balinese birth-order names of one banjar sharing their second word",
    "rt-chinese": "Chinese-Indonesian siblings with a generation name, an Indonesian name on some records",
}
MAX_GROUP = 24


@dataclass
class Person:
    id: str
    words: list[str]
    gender: str
    birth: date
    kec: str
    desa: str
    dusun: str
    rt: int
    rw: int
    phone: str | None
    nik: str | None = None
    short_words: list[str] | None = None      # a shorter name some records use ("Ahmad" for "Ahmad bin Yusuf")
    alias_words: list[str] | None = None      # another name some records use (an Indonesian name)
    partial_birth: bool = False               # only the year is known: records carry placeholders


@dataclass
class Record:
    person: Person
    case: str
    nik: str | None = None         # None: the person's own (with noise); "" : none
    nik_clean: bool = False
    collides_with: str | None = None
    phone: str | None = None
    clean: bool = False
    extra_noise: list[str] = field(default_factory=list)


class RedTeam:
    def __init__(self, seed: int, patients: int, settings: Settings):
        self.rng = random.Random(f"redteam|{seed}")
        self.seed, self.patients, self.settings = seed, patients, settings
        self.serials: dict[str, int] = {}
        self.persons = 0
        self.records: list[Record] = []
        self.stats = {kind: {"eligible": 0, "applied": 0} for kind in RATES}

    # ------------------------------------------------------------------ draws
    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def phone(self) -> str:
        operator = self.pick(("11", "12", "13", "21", "52", "56", "77", "95"))
        return f"08{operator}{self.rng.randrange(10**7, 10**8)}"

    def nik(self, kec: str, birth: date, gender: str) -> str:
        prefix = f"{PROVINCE}{REGENCY}{kec}{birth.day + (40 if gender == 'female' else 0):02d}" \
                 f"{birth.month:02d}{birth.year % 100:02d}"
        self.serials[prefix] = self.serials.get(prefix, 0) + 1
        return f"{prefix}{self.serials[prefix]:04d}"

    def person(self, words: str | list[str], gender: str, birth: date, *, home: Person | None = None,
               nik: float = 0.8) -> Person:
        self.persons += 1
        if home is None:
            kec = self.pick(sorted(KECAMATAN))
            where = (kec, self.pick(DESA), self.pick(DUSUN), self.rng.randint(1, 9), self.rng.randint(1, 12))
            phone = self.phone() if self.chance(0.6) else None
        else:
            where, phone = (home.kec, home.desa, home.dusun, home.rt, home.rw), home.phone
        words = words.split() if isinstance(words, str) else list(words)
        p = Person(f"rt-person-{self.persons:06d}", words, gender, birth, *where, phone)
        if self.chance(nik):
            p.nik = self.nik(p.kec, birth, gender)
        return p

    def born(self, low: int, high: int) -> date:
        return AS_OF - timedelta(days=self.rng.randint(low * 365, high * 365 + 364))

    def emit(self, person: Person, case: str, copies: int | None = None, **kw) -> None:
        for i in range(copies or self.rng.choices((1, 2, 3), (50, 32, 18))[0]):
            self.records.append(Record(person, case, clean=i == 0, **kw))

    # ------------------------------------------------------------------ groups
    def ordinary(self) -> None:
        gender = self.pick(("male", "female"))
        pool = self.pick((PLAIN_NAMES[gender], MALE_ISLAMIC if gender == "male" else FEMALE_ISLAMIC))
        copies = self.rng.choices((1, 2, 3, 4, 5), (50, 25, 13, 7, 5))[0]
        self.emit(self.person(self.pick(pool), gender, self.born(1, 80)), "rt-single" if copies == 1 else
                  "rt-duplicate", copies)

    def family(self, sibling_typo: float = 0.15) -> list[Person]:
        father = self.person(self.pick(PLAIN_NAMES["male"] + MALE_ISLAMIC), "male", self.born(30, 60), nik=0.9)
        mother = self.person(self.pick(PLAIN_NAMES["female"] + FEMALE_ISLAMIC), "female",
                             father.birth + timedelta(days=self.rng.randint(-5 * 365, 6 * 365)), home=father,
                             nik=0.9)
        gender = self.pick(("male", "female"))
        names = self.pick(SIBLING_PAIRS[gender])
        first = self.person(names[0], gender, self.born(3, 20), home=father, nik=0.75)
        second = self.person(names[1], gender, first.birth + timedelta(days=self.rng.randint(600, 900)),
                             home=father, nik=0.75)
        kids = [first, second]
        if self.chance(0.4):
            g = self.pick(("male", "female"))
            kids.append(self.person(self.pick(PLAIN_NAMES[g]), g, self.born(1, 12), home=father, nik=0.6))
        for p in (father, mother):
            self.emit(p, "rt-parent")
        for kid in kids:
            self.emit(kid, "rt-sibling")
        if first.nik and self.chance(sibling_typo):
            # The clerk copied the sibling's KK line and changed one serial digit.
            serial = first.nik[12:]
            i = self.rng.randrange(4)
            digit = self.pick([d for d in "0123456789" if d != serial[i]])
            self.records.append(Record(second, "rt-sibling-nik-typo", nik=first.nik[:12] + serial[:i] + digit +
                                       serial[i + 1:], nik_clean=True, collides_with=first.id))
        return [father, mother, *kids]

    def patronymic(self) -> None:
        grandfather = self.pick(("Hasan", "Abdullah", "Umar", "Salim"))
        father_given = self.pick(("Yusuf", "Ismail", "Ibrahim", "Ahmad"))
        son_given = self.pick(("Ahmad", "Muhammad", "Ali", "Yusuf"))
        father = self.person([father_given, "bin", grandfather], "male", self.born(45, 75), nik=0.85)
        father.short_words = [father_given]
        son = self.person([son_given, "bin", father_given], "male", self.born(18, 40), home=father, nik=0.85)
        son.short_words = [son_given]
        self.emit(father, "rt-patronymic")
        self.emit(son, "rt-patronymic")
        if self.chance(0.5):
            daughter = self.person([self.pick(("Fatimah", "Aisyah", "Zainab")), "binti", father_given], "female",
                                   self.born(10, 35), home=father, nik=0.8)
            daughter.short_words = daughter.words[:1]
            self.emit(daughter, "rt-patronymic")

    def junior(self) -> None:
        name = self.pick(("Robert Simanjuntak", "Yohanes Situmorang", "Agus Salim", "Budi Hartono", "Slamet Riyadi"))
        father = self.person(name, "male", self.born(45, 70), nik=0.85)
        son = self.person(name, "male", father.birth + timedelta(days=self.rng.randint(22 * 365, 35 * 365)),
                          home=father, nik=0.85)
        if self.chance(0.3):
            son.alias_words = son.words + ["Jr"]
        self.emit(father, "rt-junior")
        self.emit(son, "rt-junior")

    def mononyms(self) -> None:
        gender = self.pick(("male", "female"))
        name = self.pick(JAVANESE_MONONYM[gender])
        village = self.person(name, gender, self.born(60, 85), nik=0.5)
        village.partial_birth = True
        people = [village]
        for _ in range(self.rng.randint(1, 3)):
            # Same name, same village, the same decade or the same year (KTP placeholder 1 July / 31 December).
            year = village.birth.year + self.rng.choice((0, 0, 1, -2, 5))
            month, day = self.pick(((7, 1), (12, 31), (1, 1)))
            other = self.person(name, gender, date(year, month, day) if self.chance(0.5) else self.born(60, 85),
                                nik=0.5)
            other.kec, other.desa, other.dusun = village.kec, village.desa, village.dusun
            other.partial_birth = True
            people.append(other)
        for p in people:
            self.emit(p, "rt-mononym")

    def twins(self) -> None:
        gender = self.pick(("male", "female"))
        one = self.person(self.pick(MALE_ISLAMIC + PLAIN_NAMES["male"] if gender == "male"
                                    else FEMALE_ISLAMIC + PLAIN_NAMES["female"]), gender, self.born(1, 40), nik=0)
        words = list(one.words)
        if self.chance(0.4):
            word = words[-1]
            i = self.rng.randrange(1, len(word))
            words[-1] = word[:i] + self.pick([c for c in "aiu" if c != word[i]]) + word[i + 1:]
        two = self.person(words, gender, one.birth, home=one, nik=0)
        for twin in (one, two):
            if self.chance(0.8):
                twin.nik = self.nik(one.kec, one.birth, gender)   # consecutive serials
            self.emit(twin, "rt-twin")

    def child_on_mother_nik(self) -> None:
        mother = self.person(self.pick(FEMALE_ISLAMIC + PLAIN_NAMES["female"]), "female", self.born(20, 38), nik=1)
        gender = self.pick(("male", "female"))
        child = self.person(self.pick(SIBLING_PAIRS[gender])[0], gender, self.born(0, 4), home=mother, nik=0.4)
        self.emit(mother, "rt-mother")
        for _ in range(self.rng.randint(1, 2)):
            self.records.append(Record(child, "rt-child-mother-nik", nik=mother.nik, nik_clean=self.chance(0.5),
                                       collides_with=mother.id))
        if self.chance(0.6):
            self.emit(child, "rt-child-mother-nik", nik="" if child.nik is None else None)

    def kk_in_nik(self) -> None:
        members = self.family(sibling_typo=0)
        issued = AS_OF - timedelta(days=self.rng.randint(200, 5000))
        kk = self.nik(members[0].kec, issued, "male")     # a KK number: region, issue date, serial
        for p in self.rng.sample(members, min(len(members), self.rng.randint(2, 4))):
            self.records.append(Record(p, "rt-kk-member", nik=kk, nik_clean=self.chance(0.5)))

    def cadre_phone(self) -> None:
        cadre = self.phone()
        desa, kec = self.pick(DESA), self.pick(sorted(KECAMATAN))
        for _ in range(self.rng.randint(4, 9)):
            gender = self.pick(("male", "female"))
            p = self.person(self.pick(PLAIN_NAMES[gender] + JAVANESE_MONONYM[gender]), gender, self.born(50, 85),
                            nik=0.6)
            p.kec, p.desa = kec, desa
            self.emit(p, "rt-cadre-phone", phone=cadre)

    def balinese(self) -> None:
        second = self.pick(BALI_NAMES)
        home = None
        for order in self.rng.sample(range(4), self.rng.randint(2, 4)):
            gender = "female" if second in ("Sri Wahyuni", "Ariani") else self.pick(("male", "female"))
            words = ["I" if gender == "male" else "Ni", BALI_ORDER[order], *second.split()]
            p = self.person(words, gender, self.born(5, 70), home=home if self.chance(0.6) else None, nik=0.7)
            home = home or p
            self.emit(p, "rt-balinese")

    def chinese(self) -> None:
        surname = self.pick(CHINESE_SURNAME)
        generation, last = self.pick(CHINESE_GENERATION)
        home = None
        for given in self.rng.sample(last, 2):
            gender = self.pick(("male", "female"))
            p = self.person([surname, generation, given], gender, self.born(20, 70), home=home, nik=0.8)
            p.alias_words = [self.pick(("Hendra", "Lina", "Susanto", "Linda", "Budi")), INDONESIAN_FOR_CHINESE[surname]]
            home = home or p
            self.emit(p, "rt-chinese")

    def run(self) -> None:
        groups = {"ordinary": self.ordinary, "family": self.family, "patronymic": self.patronymic,
                  "junior": self.junior, "mononyms": self.mononyms, "twins": self.twins,
                  "child-on-mother-nik": self.child_on_mother_nik, "kk-in-nik": self.kk_in_nik,
                  "cadre-phone": self.cadre_phone, "balinese": self.balinese, "chinese": self.chinese}
        while len(self.records) < self.patients - MAX_GROUP:
            groups[self.rng.choices(list(GROUP_WEIGHTS), list(GROUP_WEIGHTS.values()))[0]]()
        while len(self.records) < self.patients:
            self.ordinary()
        del self.records[self.patients:]

    # ------------------------------------------------------------------ one record, with its noise
    def hit(self, kind: str, labels: list[str], record: Record) -> bool:
        """Draws the error ``kind`` for a record it can apply to (never the first record of a person);
        names it in ``labels`` and counts it in ``stats``."""
        if record.clean:
            return False
        self.stats[kind]["eligible"] += 1
        if self.rng.random() >= RATES[kind]:
            return False
        self.stats[kind]["applied"] += 1
        labels.append(kind)
        return True

    def name(self, record: Record, labels: list[str]) -> dict:
        p = record.person
        words = list(p.words)
        if not record.clean and p.short_words and self.chance(0.4):
            words, _ = list(p.short_words), labels.append("name-short-form")
        elif not record.clean and p.alias_words and self.chance(0.3):
            words, _ = list(p.alias_words), labels.append("name-alias")
        if self.hit("name-transliteration", labels, record):
            spelled = [i for i, w in enumerate(words) if w in TRANSLITERATION]
            if spelled:
                i = self.pick(spelled)
                words[i] = self.pick(TRANSLITERATION[words[i]])
        if words[0] == "Muhammad" and self.hit("name-muhammad-abbrev", labels, record):
            words[0] = self.pick(("M.", "Moh.", "Muh."))
        if len(words) >= 3 and self.hit("name-word-dropped", labels, record):
            del words[self.rng.randrange(1, len(words))]
        long_words = [i for i, w in enumerate(words) if len(w) >= 5]
        if long_words and self.hit("name-typo", labels, record):
            i = self.pick(long_words)
            w = words[i]
            j = self.rng.randrange(1, len(w) - 1)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
        if self.hit("name-caps", labels, record):
            words = [w.upper() for w in words]
        age = (AS_OF - p.birth).days // 365
        prefix = []
        if self.hit("name-honorific", labels, record):
            prefix = [self.pick(CARE["child"] if age < 15 else CARE[p.gender])]
        name: dict = {"use": "official", "text": " ".join(prefix + words)}
        if len(words) > 1 and self.chance(0.5) and "bin" not in words and "binti" not in words:
            name["given"], name["family"] = words[:-1], words[-1]
        else:
            name["given"] = words
        if prefix:
            name["prefix"] = prefix
        return name

    def nik_value(self, record: Record, labels: list[str]) -> str | None:
        if record.nik == "":
            return None
        value = record.nik if record.nik is not None else record.person.nik
        if value is None:
            return None
        if record.nik is None and self.hit("nik-absent", labels, record):
            return None
        noisy = not record.nik_clean
        if noisy and self.hit("nik-digit", labels, record):
            i = self.rng.randrange(12, 16) if self.chance(0.8) else self.rng.randrange(6, 12)
            value = value[:i] + self.pick([d for d in "0123456789" if d != value[i]]) + value[i + 1:]
        elif noisy and self.hit("nik-transposed", labels, record):
            i = self.rng.randrange(6, 15)
            value = value[:i] + value[i + 1] + value[i] + value[i + 2:]
        if noisy and self.hit("nik-apostrophe", labels, record):
            value = "'" + value
        return value

    def birth_date(self, record: Record, labels: list[str]) -> str | None:
        born = record.person.birth
        if record.person.partial_birth and not record.clean:
            # Only the year is known: each system writes its own placeholder.
            style = self.pick(("year", "0701", "1231", "0101", "15th", "nik"))
            labels.append(f"birthdate-placeholder:{style}")
            if style == "year":
                return str(born.year)
            if style == "15th":
                return date(born.year, self.rng.randint(1, 12), 15).isoformat()
            if style != "nik":
                return f"{born.year}-{style[:2]}-{style[2:]}"
        if self.hit("birthdate-missing", labels, record):
            return None
        if self.hit("birthdate-year-only", labels, record):
            return str(born.year)
        if self.hit("birthdate-day-off", labels, record):
            born = born + timedelta(days=self.pick((-1, 1)))
        elif self.hit("birthdate-year-off", labels, record):
            born = date(born.year + self.pick((-1, 1)), born.month, min(born.day, 28))
        elif born.day <= 12 and born.day != born.month and self.hit("birthdate-day-month-swap", labels, record):
            born = date(born.year, born.day, born.month)
        return born.isoformat()

    def phone_value(self, record: Record) -> str | None:
        phone = record.phone or record.person.phone
        if not phone or not (record.clean or record.phone or self.chance(0.6)):
            return None
        style = self.rng.randrange(4)
        return (phone, "+62" + phone[1:], "62" + phone[1:], f"{phone[:4]}-{phone[4:8]}-{phone[8:]}")[style]

    def resource(self, record: Record, index: int) -> tuple[dict, PatientInfo]:
        p, labels = record.person, list(record.extra_noise)
        h = f"{self.rng.getrandbits(128):032x}"
        pid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        source = self.pick(SYSTEMS)
        identifiers = [{"use": "usual", "system": f"urn:source:{source}:mrn", "value": f"RT{index:07d}"}]
        nik = self.nik_value(record, labels)
        if nik:
            identifiers.append({"use": "official", "system": self.settings.nik_system, "value": nik})
        resource: dict = {"resourceType": "Patient", "id": pid, "meta": {"source": f"urn:source:{source}"},
                          "identifier": identifiers, "active": True, "name": [self.name(record, labels)]}
        phone = self.phone_value(record)
        if phone:
            resource["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
        if not self.hit("gender-missing", labels, record):
            resource["gender"] = p.gender
        birth = self.birth_date(record, labels)
        if birth:
            resource["birthDate"] = birth
        if record.clean or self.chance(0.8):
            line = self.pick((f"RT {p.rt:03d} RW {p.rw:03d}", f"RT.{p.rt}/RW.{p.rw}", f"Rt {p.rt} Rw {p.rw}"))
            resource["address"] = [{"use": "home", "line": [f"Dk. {p.dusun} {line}", f"Ds. {p.desa}"],
                                    "district": KECAMATAN[p.kec], "city": "Klaten", "state": "Jawa Tengah",
                                    "country": "ID"}]
        info = PatientInfo(id=pid, person=p.id, source=source, case=record.case, has_nik=bool(nik),
                           load="bulk" if self.chance(0.7) else "stream", nik_kind="nik" if nik else None,
                           collides_with=record.collides_with, noise=labels)
        return resource, info


def pattern_counts(truth: dict) -> dict[str, int]:
    """Records per case label (the patterns), from a ground truth."""
    counts: dict[str, int] = {}
    for info in truth["patients"].values():
        counts[info["case"]] = counts.get(info["case"], 0) + 1
    return dict(sorted(counts.items()))


def generate(out_dir: str | Path, seed: int, patients: int, settings: Settings | None = None) -> dict:
    """Writes the red-team district into ``out_dir``; returns its ground truth (as written)."""
    settings = settings or Settings()
    out = empty_dataset_dir(out_dir)
    team = RedTeam(seed, patients, settings)
    team.run()
    team.rng.shuffle(team.records)        # records of one group are not adjacent in the load order
    patients_out: dict[str, dict] = {}
    persons: dict[str, list[str]] = {}
    writer = NdjsonWriter(out)
    try:
        for index, record in enumerate(team.records, start=1):
            resource, info = team.resource(record, index)
            writer.write(info.load, resource)
            patients_out[info.id] = info.as_json()
            persons.setdefault(info.person, []).append(info.id)
    finally:
        writer.close()
    params = {"generator": "redteam", "seed": seed, "patients": patients, "as_of": AS_OF.isoformat()}
    truth = {"seed": seed, "params": params, "patients": patients_out, "persons": persons, "labels": CASE_LABELS,
             "noise_rates": RATES, "noise_stats": team.stats}
    truth["cases"] = pattern_counts(truth)
    (out / "manifest.json").write_text(json.dumps({"params": params, "counts": writer.counts}, indent=1,
                                                  sort_keys=True) + "\n")
    (out / "ground_truth.json").write_text(json.dumps(truth, separators=(",", ":")) + "\n")
    return truth
