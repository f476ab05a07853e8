"""The look-alike mix: a district made of different people built to look alike, for judging precision.

Households whose members share an address and a phone (and a family name where the tradition has one),
with a relative's NIK sometimes typed onto another member's record; twins with adjacent NIK serials,
similar names and the same birth date (children and adults, ``multipleBirthInteger`` on some records
only); namesakes with very common names on the same, often placeholder, birth date; newborns on their
mother's NIK (the generator's own ``newborn`` and ``twins`` groups). Every person has 1-3 records, so
true duplicates are there too (recall is measured on the same set). Which records are one person is
in the ground truth (``persons``); the case labels below say which pattern a record belongs to.

Selected with ``Params(mix="lookalike")``; the evaluation runs it with the legacy noise model.
The generator is passed in (``DistrictGenerator``), not imported, so the modules form no cycle.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tools.dataset import tables as T

LOOKALIKE_CASE_LABELS: dict[str, str] = {
    "household-parent": "a parent in a household whose members share address and phone (and the family name "
                        "where the tradition has one); never merge with another member",
    "household-child": "a child (any age) in such a household; never merge with a parent or a sibling",
    "relative-nik": "a household member's record carrying another member's NIK (collides_with names the NIK's "
                    "owner); same person as the member's other records, must NOT be merged with the owner",
    "twin-lookalike": "one of twins born the same day, adjacent NIK serials when of one sex, similar names, "
                      "same address and phone, children or adults, multipleBirthInteger on some records only; "
                      "copies of one twin merge, the two twins never",
    "namesake": "different people of one sex with a very common name on the same (often 1 January) birth "
                "date; never merge",
}

# How often each group starts in the look-alike mix (weights).
LOOKALIKE_WEIGHTS = {"household": 40, "twins": 16, "namesakes": 18, "newborn": 8, "newborn-twins": 5,
                     "ordinary": 13}
# Names so common that a district holds many different people with them.
COMMON_FIRST = {"male": ("Muhammad", "Agus", "Budi", "Ahmad", "Nur", "Slamet", "Eko"),
                "female": ("Siti", "Sri", "Nur", "Dewi", "Sri", "Siti", "Rahayu")}
COMMON_SECOND = {"male": ("", "", "Hidayat", "Santoso", "Setiawan", "Saputra", "Nugroho"),
                 "female": ("", "", "Rahayu", "Lestari", "Wahyuni", "Aminah", "Handayani")}
# Javanese birth-order names siblings often get (first, second, third child).
BIRTH_ORDER = ("Eko", "Dwi", "Tri")
FAMILY_TRADITIONS = ("batak", "chinese", "sundanese", "minang", "bugis")
MAX_GROUP_RECORDS = 16    # the most a group writes: a household of 5 people x 3 records + a relative's NIK


class LookalikeMix:
    def __init__(self, generator: Any):
        self.g = generator

    def run(self) -> None:
        g = self.g
        groups = {"household": self.household, "twins": self.twins, "namesakes": self.namesakes,
                  "newborn": g.newborn, "newborn-twins": g.twins, "ordinary": self.ordinary}
        while len(g.truth.patients) < g.p.patients:
            if g.p.patients - len(g.truth.patients) <= MAX_GROUP_RECORDS:
                g.ordinary(min(g.p.patients - len(g.truth.patients), g.rng.randint(1, 3)))
                continue
            groups[g.weighted(LOOKALIKE_WEIGHTS)]()

    def ordinary(self) -> None:
        self.g.ordinary(self.g.rng.randint(1, 3))

    def records(self, person, case: str, *, multiple_birth=None) -> None:
        """1-3 records of ``person`` across the sources (with the person's NIK when they have one);
        ``multiple_birth``: a value, or a function of the record's index."""
        g = self.g
        for i, source in enumerate(g.sources_for(g.rng.randint(1, 3))):
            births = multiple_birth(i) if callable(multiple_birth) else multiple_birth
            g.emit(*g.patient(person, source, case, canonical=i == 0, multiple_birth=births), person)

    # ------------------------------------------------------------------ households
    def household(self) -> None:
        g = self.g
        tradition = g.pick(FAMILY_TRADITIONS) if g.chance(0.6) else g.pick(("javanese", "arabic"))
        father = g.new_person(tradition=tradition, gender="male", age_range=(28, 65))
        family_name = father.words[-1] if father.has_family else None
        mother_birth = father.birth_date + timedelta(days=g.rng.randint(-8 * 365, 3 * 365))
        mother_words, mother_family = g.person_words(tradition, "female")
        if family_name and g.chance(0.5):            # known by her husband's family name
            mother_words = (mother_words[:-1] if mother_family else mother_words) + [family_name]
            mother_family = True
        mother = g.new_person(tradition=tradition, gender="female", birth_date=mother_birth, home=father,
                              nik=False, words=mother_words, has_family=mother_family)
        mother.nik = g.allocate_nik(father.kecamatan, mother_birth, "female")
        parents = [father, mother]
        youngest_parent = max(father.birth_date, mother.birth_date)
        children = []
        shared_second = g.pick(T.SECOND_GIVEN_MALE) if tradition == "javanese" and g.chance(0.5) else None
        for order in range(g.rng.randint(1, 3)):
            age_limit = max(1, (g.p.as_of - youngest_parent).days // 365 - 18)
            birth = g.p.as_of - timedelta(days=g.rng.randint(200, age_limit * 365 + 200))
            gender = g.pick(("male", "female"))
            words, has_family = g.person_words(tradition, gender)
            if shared_second:                 # Eko Santoso, Dwi Santoso, Tri Santoso
                words, has_family = [BIRTH_ORDER[order], shared_second], False
            elif family_name:
                words = (words[:-1] if has_family else words) + [family_name]
                has_family = True
            child = g.new_person(tradition=tradition, gender=gender, birth_date=birth, home=father, nik=False,
                                 words=words, has_family=has_family)
            if g.chance(0.85):                # a young child may not be on the KK yet
                child.nik = g.allocate_nik(father.kecamatan, birth, gender)
            children.append(child)
        for person in parents:
            self.records(person, "household-parent")
        for child in children:
            self.records(child, "household-child")
        if g.chance(0.35):
            # A relative's NIK typed onto another member's record (a child under a parent's NIK, a wife
            # under her husband's): the record is the member's, the NIK is the owner's.
            member, owner = g.pick([(mother, father), *((c, g.pick(parents)) for c in children)])
            g.emit(*g.patient(member, g.pick(("simpus", "pcare", "sikda", "lab", "simrs")), "relative-nik",
                              nik=owner.nik, collides_with=owner.id), member)

    # ------------------------------------------------------------------ twins
    def twins(self) -> None:
        g = self.g
        adult = g.chance(0.5)
        age_days = g.rng.randint(18 * 365, 60 * 365) if adult else g.rng.randint(365, 17 * 365)
        birth = g.p.as_of - timedelta(days=age_days)
        tradition = g.pick(("javanese", "arabic", "sundanese", "batak", "chinese"))
        first_gender = g.pick(("male", "female"))
        second_gender = first_gender if g.chance(0.7) else ("female" if first_gender == "male" else "male")
        first = g.new_person(tradition=tradition, gender=first_gender, birth_date=birth, nik=False)
        words = self.twin_name(first.words, first.has_family, tradition, second_gender)
        second = g.new_person(tradition=tradition, gender=second_gender, birth_date=birth, home=first, nik=False,
                              words=words, has_family=first.has_family)
        # Registered together: consecutive serials (adjacent when both are of one sex).
        first.nik = g.allocate_nik(first.kecamatan, birth, first_gender)
        second.nik = g.allocate_nik(first.kecamatan, birth, second_gender)
        if g.chance(0.2):
            g.pick((first, second)).nik = None
        style = g.rng.random()         # multipleBirthInteger on every record, on some, or on none
        for order, twin in ((1, first), (2, second)):
            if style < 0.4:
                births = order
            elif style < 0.7:
                def births(i, order=order):
                    return order if g.chance(0.5) else None
            else:
                births = None
            self.records(twin, "twin-lookalike", multiple_birth=births)

    def twin_name(self, words: list[str], has_family: bool, tradition: str, gender: str) -> list[str]:
        """A name like the twin's: the same first word with another second, or one vowel changed."""
        g = self.g
        words = list(words)
        if len(words) >= 2 and not has_family and g.chance(0.5):
            pool = T.SECOND_GIVEN_MALE if gender == "male" else T.SECOND_GIVEN_FEMALE
            return [words[0], g.pick([w for w in pool if w != words[1]])]
        first = words[0]
        vowels = [i for i, ch in enumerate(first) if ch in "aiueo" and i > 0]
        if vowels:
            i = g.pick(vowels)
            first = first[:i] + g.pick([v for v in "aiueo" if v != first[i]]) + first[i + 1:]
        else:
            first = g.pick(T.TRADITIONS[tradition][gender]).split()[0]
        return [first, *words[1:]]

    # ------------------------------------------------------------------ namesakes
    def namesakes(self) -> None:
        g = self.g
        gender = g.pick(("male", "female"))
        words = [g.pick(COMMON_FIRST[gender])]
        second = g.pick(COMMON_SECOND[gender])
        if second:
            words.append(second)
        year = g.p.as_of.year - g.rng.randint(20, 75)
        # An unknown birth date registered as 1 January (on the KTP too, so in the NIK), or one shared date.
        birth = date(year, 1, 1) if g.chance(0.6) else date(year, g.rng.randint(1, 12), g.rng.randint(1, 28))
        kecamatan = g.pick(sorted(T.KECAMATAN)) if g.chance(0.5) else None
        for _ in range(g.rng.randint(2, 4)):
            person = g.new_person(tradition="arabic" if words[0] in ("Muhammad", "Siti", "Ahmad", "Nur")
                                  else "javanese", gender=gender, birth_date=birth, nik=False,
                                  words=words, has_family=False)
            if kecamatan is not None:         # same kecamatan: NIKs differ only in the serial
                person.kecamatan = kecamatan
                person.desa = g.pick(T.KECAMATAN[kecamatan][2])
            if g.chance(0.7):
                person.nik = g.allocate_nik(person.kecamatan, birth, gender)
            self.records(person, "namesake")

