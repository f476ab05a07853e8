"""Synthetic district dataset: FHIR R4 NDJSON from several legacy systems, with the duplicates and hard
cases the field report describes, and a ground truth saying which records are the same person.

Everything comes from one ``random.Random(seed)``, so a seed and the parameters reproduce the files byte
for byte. Output layout::

    DIR/bulk/<ResourceType>.ndjson     loaded first (shared Organizations/Practitioners/Locations live here)
    DIR/stream/<ResourceType>.ndjson   arrives later, one patient's records at a time
    DIR/manifest.json                  counts per phase and type (the loader's progress totals)
    DIR/ground_truth.json              see ``GroundTruth`` below and README "District dataset"

Every resource of a patient record (and everything it references, except the shared resources) is in the
patient's phase; a record in the bulk phase never references a streamed one, so servers that enforce
referential integrity accept the bulk phase on its own.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from shared.config import Settings
from tools.dataset import tables as T
from tools.dataset.noise_legacy import RATES as LEGACY_RATES
from tools.dataset.noise_legacy import LegacyNoise

SOURCES = ("simrs", "simpus", "sikda", "pcare", "lab")
PHASES = ("bulk", "stream")
DEFAULT_AS_OF = date(2025, 6, 30)

# What each ground-truth case label means, written into ground_truth.json for whoever scores a run.
CASE_LABELS: dict[str, str] = {
    "single": "the person's only record; nothing to merge",
    "duplicate": "one of 2-10 records of the same person with the same NIK (after normalisation); merge",
    "nik-collision": "NIK mistyped in its last digits so it equals another person's real NIK "
                     "(collides_with names that person); must NOT be merged with the NIK's owner",
    "nik-collision-owner": "the real owner of a NIK that another person's record carries by mistake",
    "mother": "a mother whose newborn is registered on her NIK (nik-ibu); never merge the baby into her",
    "newborn-nik-ibu": "newborn registered on the mother's NIK with identifier system nik-ibu and a "
                       "'By. Ny. <mother>' name; same person as its newborn-own-nik record if any",
    "newborn-own-nik": "the same baby re-registered later with its own NIK and real name; linking it to the "
                       "nik-ibu record is a review case, not an automatic merge",
    "twin": "one of twins on the mother's NIK (multipleBirthInteger 1/2, same birth date); copies of the "
            "same twin merge, the two twins never",
    "no-nik": "a person's only record, without a NIK",
    "no-nik-pair": "two records of the same person, both without a NIK (demographic match only)",
    "no-nik-partial": "a record without a NIK whose person has other records with a NIK",
    "two-niks": "a person re-registered with a second NIK; records under different NIKs are not expected "
                "to be merged automatically",
    "same-name-birthdate": "different people sharing name, birth date and gender (common names); never merge",
    "sibling": "siblings: same family name, address and phone, different birth dates; never merge",
}

# Patient-record groups and how often each starts (weights); each hard case ends up a few % of records.
GROUP_WEIGHTS = {
    "ordinary": 70, "collision": 4, "newborn": 5, "twins": 2.5, "no-nik": 7, "two-niks": 3,
    "common-name": 3, "siblings": 4,
}
# How many records an ordinary person has across the legacy systems.
COPIES_WEIGHTS = {1: 60, 2: 20, 3: 9, 4: 5, 5: 2, 6: 1.5, 7: 1, 8: 0.6, 9: 0.5, 10: 0.4}
MAX_GROUP_RECORDS = 12
NOISE_MODELS = ("field", "legacy")       # field: the noise in this module; legacy: tools/dataset/noise_legacy.py
MIXES = ("district", "lookalike")        # lookalike: tools/dataset/lookalike.py


@dataclass(frozen=True)
class Params:
    patients: int = 1000
    seed: int = 1
    resources_per_patient: float = 20.0   # mean number of clinical resources per patient record
    bulk_fraction: float = 0.7
    as_of: date = DEFAULT_AS_OF            # "today" of the dataset, fixed so output does not depend on the clock
    noise: str = "field"                   # one of NOISE_MODELS
    mix: str = "district"                  # one of MIXES: which groups of people the district is made of

    def __post_init__(self):
        if self.noise not in NOISE_MODELS or self.mix not in MIXES:
            raise ValueError(f"noise must be one of {NOISE_MODELS}, mix one of {MIXES}")

    def as_json(self) -> dict:
        out = {"patients": self.patients, "seed": self.seed, "resources_per_patient": self.resources_per_patient,
               "bulk_fraction": self.bulk_fraction, "as_of": self.as_of.isoformat()}
        # Only when not the default, so the default output stays byte-identical to before they existed.
        if self.noise != "field":
            out["noise"] = self.noise
        if self.mix != "district":
            out["mix"] = self.mix
        return out


@dataclass
class Person:
    id: str
    tradition: str
    gender: str
    birth_date: date
    words: list[str]              # canonical name words, e.g. ["Maruli", "Siregar"]
    has_family: bool              # last word is a family name
    kecamatan: str
    desa: str
    dusun: str
    rt: int
    rw: int
    phone: str | None
    nik: str | None = None


@dataclass
class PatientInfo:
    id: str
    person: str
    source: str
    case: str
    has_nik: bool
    load: str
    nik_kind: str | None
    collides_with: str | None = None
    noise: list[str] | None = None     # legacy noise only: the errors in this record (noise_legacy.RATES)

    def as_json(self) -> dict:
        out = {"person": self.person, "source": self.source, "case": self.case, "has_nik": self.has_nik,
               "load": self.load, "nik_kind": self.nik_kind}
        if self.collides_with:
            out["collides_with"] = self.collides_with
        if self.noise is not None:
            out["noise"] = self.noise
        return out


@dataclass
class GroundTruth:
    seed: int
    params: dict
    patients: dict[str, PatientInfo] = field(default_factory=dict)
    persons: dict[str, list[str]] = field(default_factory=dict)
    noise_stats: dict[str, dict[str, int]] | None = None   # legacy noise: per type, records eligible/applied

    def add(self, info: PatientInfo) -> None:
        self.patients[info.id] = info
        self.persons.setdefault(info.person, []).append(info.id)

    def cases(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for info in self.patients.values():
            counts[info.case] = counts.get(info.case, 0) + 1
        return dict(sorted(counts.items()))

    def as_json(self) -> dict:
        from tools.dataset.lookalike import LOOKALIKE_CASE_LABELS

        cases = self.cases()
        labels = {**CASE_LABELS, **{k: v for k, v in LOOKALIKE_CASE_LABELS.items() if k in cases}}
        out = {"seed": self.seed, "params": self.params,
               "patients": {pid: info.as_json() for pid, info in self.patients.items()},
               "persons": self.persons, "cases": cases, "labels": labels}
        if self.noise_stats is not None:
            out["noise_rates"] = LEGACY_RATES
            out["noise_stats"] = self.noise_stats
        return out


class NdjsonWriter:
    """One open file per (phase, resource type); counts what it wrote."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self._files: dict[tuple[str, str], object] = {}
        self.counts: dict[str, dict[str, int]] = {phase: {} for phase in PHASES}

    def write(self, phase: str, resource: dict) -> None:
        rtype = resource["resourceType"]
        handle = self._files.get((phase, rtype))
        if handle is None:
            (self.out_dir / phase).mkdir(parents=True, exist_ok=True)
            handle = open(self.out_dir / phase / f"{rtype}.ndjson", "w", encoding="utf-8")
            self._files[(phase, rtype)] = handle
        handle.write(json.dumps(resource, ensure_ascii=False, separators=(",", ":")))
        handle.write("\n")
        self.counts[phase][rtype] = self.counts[phase].get(rtype, 0) + 1

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


def ref(resource: dict) -> dict:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def codeable(system: str | None, code: str | None, display: str) -> dict:
    if system is None:
        return {"text": display}
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def make_nik(kecamatan: str, birth_date: date, gender: str, serial: int) -> str:
    """The 16-digit NIK of someone first registered in this district's kecamatan (females: day + 40)."""
    day = birth_date.day + (40 if gender == "female" else 0)
    return (f"{T.PROVINCE_CODE}{T.REGENCY_CODE}{kecamatan}{day:02d}{birth_date.month:02d}"
            f"{birth_date.year % 100:02d}{serial:04d}")


class DistrictGenerator:
    def __init__(self, params: Params, settings: Settings, writer: NdjsonWriter):
        self.p = params
        self.rng = random.Random(params.seed)
        self.settings = settings
        self.writer = writer
        self.truth = GroundTruth(seed=params.seed, params=params.as_json())
        self._serials: dict[str, int] = {}
        self._person_seq = 0
        self._mrn_seq = 0
        self.legacy = LegacyNoise(self.rng, params.as_of) if params.noise == "legacy" else None
        if self.legacy is not None:
            self.truth.noise_stats = self.legacy.stats
        self._shared_resources()

    # ------------------------------------------------------------------ ids and small draws
    def new_id(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def weighted(self, weights: dict):
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def when(self, start: date, end: date) -> datetime:
        span = max(0, (end - start).days)
        day = start + timedelta(days=self.rng.randint(0, span))
        return datetime(day.year, day.month, day.day, self.rng.randint(7, 20), self.rng.randrange(60))

    @staticmethod
    def iso(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:00+07:00")

    # ------------------------------------------------------------------ shared resources
    def _shared_resources(self) -> None:
        """Organizations, Practitioners and Locations, loaded with the bulk phase."""
        self.orgs: dict[str, list[dict]] = {}
        self.practitioners: dict[str, list[dict]] = {}
        self.locations: dict[str, list[dict]] = {}

        def org(name: str, kind: str) -> dict:
            resource = {"resourceType": "Organization", "id": self.new_id(), "active": True,
                        "type": [codeable("http://terminology.hl7.org/CodeSystem/organization-type", kind,
                                          {"prov": "Healthcare Provider", "pay": "Payer",
                                           "govt": "Government"}[kind])],
                        "name": name,
                        "address": [{"city": T.REGENCY_NAME, "state": T.PROVINCE_NAME, "country": "ID"}]}
            self.writer.write("bulk", resource)
            return resource

        rsud = org("RSUD Sleman", "prov")
        puskesmas = [org(f"Puskesmas {name}", "prov") for name, _, _ in T.KECAMATAN.values()]
        self.bpjs = org("BPJS Kesehatan Cabang Sleman", "pay")
        labkesda = org("Laboratorium Kesehatan Daerah Sleman", "prov")
        dinkes = org("Dinas Kesehatan Kabupaten Sleman", "govt")
        self.orgs = {"simrs": [rsud], "simpus": puskesmas, "sikda": [dinkes] + puskesmas[:6],
                     "pcare": puskesmas, "lab": [labkesda]}
        for org_resource in [rsud, *puskesmas, labkesda, dinkes]:
            staff = []
            for _ in range(3):
                gender = self.pick(("male", "female"))
                words = self.person_words(self.weighted({k: v["weight"] for k, v in T.TRADITIONS.items()}),
                                          gender)[0]
                practitioner = {"resourceType": "Practitioner", "id": self.new_id(), "active": True,
                                "name": [{"use": "official", "text": "dr. " + " ".join(words),
                                          "given": words[:-1] or words, "family": words[-1],
                                          "prefix": ["dr."]}],
                                "gender": gender}
                self.writer.write("bulk", practitioner)
                staff.append(practitioner)
            self.practitioners[org_resource["id"]] = staff
            places = []
            for room in ("Poli Umum", "Laboratorium", "IGD")[: 1 + self.rng.randrange(3)]:
                location = {"resourceType": "Location", "id": self.new_id(), "status": "active",
                            "name": f"{room} {org_resource['name']}", "mode": "instance",
                            "managingOrganization": ref(org_resource)}
                self.writer.write("bulk", location)
                places.append(location)
            self.locations[org_resource["id"]] = places

    # ------------------------------------------------------------------ persons
    def person_words(self, tradition: str, gender: str) -> tuple[list[str], bool]:
        pool = T.TRADITIONS[tradition]
        given = self.pick(pool[gender]).split()
        if tradition in ("javanese", "arabic") and self.chance(0.55):
            given += [self.pick(T.SECOND_GIVEN_MALE if gender == "male" else T.SECOND_GIVEN_FEMALE)]
        family = self.pick(pool["family"]) if pool["family"] else ""
        if tradition == "balinese":
            given += [family]
            family = ""
        if family:
            return given + [family], True
        return given, False

    def new_person(self, *, tradition: str | None = None, gender: str | None = None,
                   birth_date: date | None = None, age_range: tuple[int, int] = (1, 85),
                   home: Person | None = None, nik: bool = True, words: list[str] | None = None,
                   has_family: bool | None = None) -> Person:
        self._person_seq += 1
        tradition = tradition or self.weighted({k: v["weight"] for k, v in T.TRADITIONS.items()})
        gender = gender or self.pick(("male", "female"))
        if birth_date is None:
            age_days = self.rng.randint(age_range[0] * 365, age_range[1] * 365 + 364)
            birth_date = self.p.as_of - timedelta(days=age_days)
        if words is None:
            words, has_family = self.person_words(tradition, gender)
        if home is not None:
            kecamatan, desa, dusun, rt, rw, phone = (home.kecamatan, home.desa, home.dusun, home.rt, home.rw,
                                                     home.phone)
        else:
            kecamatan = self.pick(sorted(T.KECAMATAN))
            desa = self.pick(T.KECAMATAN[kecamatan][2])
            dusun, rt, rw = self.pick(T.DUSUN), self.rng.randint(1, 12), self.rng.randint(1, 20)
            phone = self.phone() if self.chance(0.6) else None
        person = Person(id=f"person-{self._person_seq:06d}", tradition=tradition, gender=gender,
                        birth_date=birth_date, words=list(words), has_family=bool(has_family),
                        kecamatan=kecamatan, desa=desa, dusun=dusun, rt=rt, rw=rw, phone=phone)
        if nik:
            person.nik = self.allocate_nik(kecamatan, birth_date, gender)
        return person

    def allocate_nik(self, kecamatan: str, birth_date: date, gender: str) -> str:
        prefix = make_nik(kecamatan, birth_date, gender, 0)[:12]
        serial = self._serials.get(prefix, 0) + 1
        self._serials[prefix] = serial
        return make_nik(kecamatan, birth_date, gender, serial)

    def phone(self) -> str:
        return "08" + self.pick(("12", "13", "21", "22", "52", "53", "57", "77", "78", "81", "95", "96")) + \
            f"{self.rng.randrange(10**7, 10**8)}"

    # ------------------------------------------------------------------ noise
    def noisy_nik(self, nik: str) -> str:
        """Formatting noise legacy systems add; ``shared.nik.normalise_nik`` recovers the 16 digits."""
        style = self.rng.randrange(7)
        if style == 0:
            return f"{nik[:4]} {nik[4:8]} {nik[8:12]} {nik[12:]}"
        if style == 1:
            return f"{nik[:2]}.{nik[2:4]}.{nik[4:6]}.{nik[6:12]}.{nik[12:]}"
        if style == 2:
            return f"NIK: {nik}"
        if style == 3:
            return f"{nik[:6]}-{nik[6:12]}-{nik[12:]}"
        if style == 4:
            return f" {nik} "
        if style == 5:
            return f"NIK.{nik}"
        return f"{nik[:6]} {nik[6:12]} {nik[12:]}"

    def typo(self, word: str) -> str:
        if len(word) < 5:
            return word
        i = self.rng.randrange(1, len(word) - 1)
        kind = self.rng.randrange(4)
        if kind == 0:       # neighbour letters swapped
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if kind == 1:       # letter dropped
            return word[:i] + word[i + 1:]
        if kind == 2:       # letter doubled
            return word[:i] + word[i] + word[i:]
        vowels = "aiueo"
        if word[i].lower() in vowels:
            return word[:i] + self.pick([v for v in vowels if v != word[i].lower()]) + word[i + 1:]
        return word[:i] + word[i] + word[i:]

    def name_variant(self, person: Person, source: str, canonical: bool) -> dict:
        """A FHIR HumanName for one system's copy of the person: titles, caps, spelling, order, typos."""
        words = list(person.words)
        family = words[-1] if person.has_family else None
        prefix: list[str] = []
        suffix: list[str] = []
        if not canonical:
            for i, w in enumerate(words):
                if w in T.SPELLING_VARIANTS and self.chance(0.5):
                    words[i] = self.pick(T.SPELLING_VARIANTS[w])
            if self.chance(0.12):
                candidates = [i for i, w in enumerate(words) if len(w) >= 5]
                if candidates:
                    i = self.pick(candidates)
                    words[i] = self.typo(words[i])
            if len(words) >= 3 and self.chance(0.08) and words[0] not in ("I", "Ni"):
                del words[self.rng.randrange(1, len(words))]
            if family is not None and len(words) >= 2 and self.chance(0.1):
                words = [words[-1]] + words[:-1]          # family name first, the way some forms ask
                family = None
        age = (self.p.as_of - person.birth_date).days // 365
        if self.chance(0.3 if not canonical else 0.1):
            if age < 15:
                prefix = [T.TITLES_CHILD[0]]
            else:
                prefix = [self.pick(T.TITLES_MALE if person.gender == "male" else T.TITLES_FEMALE)]
        if age >= 23 and self.chance(0.05):
            suffix = [self.pick(T.DEGREES)]
        upper = self.chance({"sikda": 0.7, "pcare": 0.6}.get(source, 0.15)) and not canonical
        text = " ".join(prefix + words) + (", " + suffix[0] if suffix else "")
        if upper:
            text = text.upper()
            words = [w.upper() for w in words]
            prefix = [w.upper() for w in prefix]
        name: dict = {"use": "official", "text": text}
        if source in ("simrs", "lab", "sikda"):
            if family is not None and words[-1].lower() == person.words[-1].lower():
                name["family"] = words[-1]
                name["given"] = words[:-1] or [words[-1]]
            elif len(words) > 1:
                name["family"] = words[-1]
                name["given"] = words[:-1]
            else:
                name["given"] = words
        elif source == "simpus":
            name["given"] = words
        if prefix and "given" in name:
            name["prefix"] = prefix
        if suffix and "given" in name:
            name["suffix"] = suffix
        return name

    def baby_name(self, mother: Person, order: int | None, *, canonical: bool) -> dict:
        mother_name = " ".join(mother.words[:3])
        style = 0 if canonical else self.rng.randrange(4)
        text = [f"By. Ny. {mother_name}", f"Bayi Ny. {mother_name}", f"BY NY {mother_name.upper()}",
                f"Bayi Ny. {mother_name}"][style]
        if order is not None:
            text += " " + (("I", "II") if self.chance(0.5) else ("1", "2"))[order - 1]
        return {"use": "official", "text": text}

    # ------------------------------------------------------------------ patient records
    def patient(self, person: Person, source: str, case: str, *, canonical: bool = False,
                nik: str | None = None, nik_kind: str | None = "nik", name: dict | None = None,
                multiple_birth: int | None = None, keep_demographics: bool = False,
                collides_with: str | None = None, load: str | None = None) -> tuple[dict, PatientInfo]:
        pid = self.new_id()
        self._mrn_seq += 1
        mrn = {"simrs": f"RM{self._mrn_seq:08d}", "simpus": f"PKM{person.kecamatan}-{self._mrn_seq:06d}",
               "sikda": f"SKD{self._mrn_seq:07d}", "pcare": f"000{self.rng.randrange(10**9, 10**10)}",
               "lab": f"LAB-{self.p.as_of.year}-{self._mrn_seq:06d}"}[source]
        identifiers = [{"use": "usual", "system": f"urn:source:{source}:mrn", "value": mrn}]
        nik_value = person.nik if nik is None and nik_kind == "nik" else nik
        if self.legacy is not None:
            return self.legacy_patient(pid, person, source, case, identifiers, nik_value, nik_kind, name,
                                       multiple_birth, keep_demographics, collides_with, load)
        if nik_kind is not None and nik_value:
            system = self.settings.nik_system if nik_kind == "nik" else self.settings.nik_ibu_system
            shown = nik_value if canonical or not self.chance(0.3) else self.noisy_nik(nik_value)
            identifiers.append({"use": "official", "system": system, "value": shown})
        else:
            nik_kind = None
        resource: dict = {"resourceType": "Patient", "id": pid, "meta": {"source": f"urn:source:{source}"},
                          "identifier": identifiers, "active": True,
                          "name": [name or self.name_variant(person, source, canonical)]}
        if person.phone and (canonical or self.chance(0.5)):
            phone = person.phone if self.chance(0.7) else "+62" + person.phone[1:]
            resource["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
        if canonical or keep_demographics or not self.chance(0.12):
            resource["gender"] = person.gender
        if canonical or keep_demographics or not self.chance(0.12):
            resource["birthDate"] = person.birth_date.isoformat()
        if canonical or self.chance(0.8):
            desa = person.desa if canonical or self.chance(0.9) else self.pick(T.KECAMATAN[person.kecamatan][2])
            kec_name, postal, _ = T.KECAMATAN[person.kecamatan]
            resource["address"] = [{"use": "home", "type": "physical",
                                    "line": [f"Dusun {person.dusun} RT {person.rt:03d} RW {person.rw:03d}",
                                             f"Desa {desa}"],
                                    "city": "Sleman", "district": kec_name, "state": T.PROVINCE_NAME,
                                    "postalCode": postal, "country": "ID"}]
        if multiple_birth is not None:
            resource["multipleBirthInteger"] = multiple_birth
        load = load or ("bulk" if self.chance(self.p.bulk_fraction) else "stream")
        info = PatientInfo(id=pid, person=person.id, source=source, case=case, has_nik=nik_kind == "nik",
                           load=load, nik_kind=nik_kind, collides_with=collides_with)
        return resource, info

    def legacy_patient(self, pid: str, person: Person, source: str, case: str, identifiers: list[dict],
                       nik_value: str | None, nik_kind: str | None, name: dict | None,
                       multiple_birth: int | None, keep_demographics: bool, collides_with: str | None,
                       load: str | None) -> tuple[dict, PatientInfo]:
        """``patient`` under the legacy noise model (``noise_legacy.LegacyNoise``)."""
        assert self.legacy is not None
        own = nik_kind == "nik" and nik_value is not None and nik_value == person.nik
        fields = self.legacy.fields(person, nik=nik_value if nik_kind is not None else None, own_nik=own,
                                    name=name, keep_demographics=keep_demographics)
        if nik_kind is not None and fields.nik is not None:
            system = self.settings.nik_system if nik_kind == "nik" else self.settings.nik_ibu_system
            identifiers.append({"use": "official", "system": system, "value": fields.nik})
        else:
            nik_kind = None
        resource: dict = {"resourceType": "Patient", "id": pid, "meta": {"source": f"urn:source:{source}"},
                          "identifier": identifiers, "active": True, "name": [fields.name]}
        if fields.phone:
            resource["telecom"] = [{"system": "phone", "value": fields.phone, "use": "mobile"}]
        if fields.gender:
            resource["gender"] = fields.gender
        if fields.birth_date:
            resource["birthDate"] = fields.birth_date
        if fields.address:
            resource["address"] = [fields.address]
        if multiple_birth is not None:
            resource["multipleBirthInteger"] = multiple_birth
        load = load or ("bulk" if self.chance(self.p.bulk_fraction) else "stream")
        info = PatientInfo(id=pid, person=person.id, source=source, case=case, has_nik=nik_kind == "nik",
                           load=load, nik_kind=nik_kind, collides_with=collides_with, noise=fields.labels)
        return resource, info

    def emit(self, resource: dict, info: PatientInfo, person: Person, *, related: list[tuple[dict, str]] = ()
             ) -> None:
        """Writes the record, its clinical resources and its ground truth."""
        self.writer.write(info.load, resource)
        self.truth.add(info)
        ClinicalRecord(self, resource, info, person, related).generate()

    def sources_for(self, copies: int) -> list[str]:
        picked = self.rng.sample(SOURCES, min(copies, len(SOURCES)))
        while len(picked) < copies:           # the same person registered twice in one system
            picked.append(self.pick(SOURCES))
        return picked

    # ------------------------------------------------------------------ groups
    def ordinary(self, copies: int) -> None:
        person = self.new_person()
        case = "single" if copies == 1 else "duplicate"
        for i, source in enumerate(self.sources_for(copies)):
            self.emit(*self.patient(person, source, case, canonical=i == 0), person)

    def collision(self) -> None:
        """Q owns NIK n; P (same kecamatan, birth date and sex, so the NIK only differs in the serial) has a
        record whose NIK was mistyped into n."""
        gender = self.pick(("male", "female"))
        birth = self.p.as_of - timedelta(days=self.rng.randint(18 * 365, 70 * 365))
        owner = self.new_person(gender=gender, birth_date=birth)
        person = self.new_person(gender=gender, birth_date=birth, nik=False)
        person.kecamatan, person.desa = owner.kecamatan, self.pick(T.KECAMATAN[owner.kecamatan][2])
        person.nik = self.allocate_nik(owner.kecamatan, birth, gender)
        for i, source in enumerate(self.sources_for(self.rng.randint(1, 2))):
            self.emit(*self.patient(owner, source, "nik-collision-owner", canonical=i == 0), owner)
        copies = self.rng.randint(0, 2)
        for i, source in enumerate(self.sources_for(copies)):
            self.emit(*self.patient(person, source, "duplicate", canonical=i == 0), person)
        self.emit(*self.patient(person, self.pick(SOURCES), "nik-collision", nik=owner.nik,
                                collides_with=owner.id), person)

    def mother(self) -> tuple[Person, list[tuple[dict, str]]]:
        mother = self.new_person(gender="female", age_range=(18, 42))
        records = []
        for i, source in enumerate(self.sources_for(self.rng.randint(1, 3))):
            resource, info = self.patient(mother, source, "mother", canonical=i == 0)
            self.emit(resource, info, mother)
            records.append((resource, info.load))
        return mother, records

    def baby_person(self, mother: Person, birth: date, gender: str | None = None) -> Person:
        tradition = mother.tradition
        gender = gender or self.pick(("male", "female"))
        words, has_family = self.person_words(tradition, gender)
        return self.new_person(tradition=tradition, gender=gender, birth_date=birth, home=mother, nik=False,
                               words=words, has_family=has_family)

    def newborn(self) -> None:
        mother, mother_records = self.mother()
        birth = self.p.as_of - timedelta(days=self.rng.randint(0, 60))
        baby = self.baby_person(mother, birth)
        for i, source in enumerate(self.sources_for(self.rng.randint(1, 2))):
            resource, info = self.patient(baby, source, "newborn-nik-ibu", nik=mother.nik, nik_kind="nik-ibu",
                                          name=self.baby_name(mother, None, canonical=i == 0),
                                          keep_demographics=True)
            self.emit(resource, info, baby, related=mother_records)
        if self.chance(0.5):
            baby.nik = self.allocate_nik(mother.kecamatan, birth, baby.gender)
            resource, info = self.patient(baby, self.pick(SOURCES), "newborn-own-nik", canonical=True)
            self.emit(resource, info, baby, related=mother_records)

    def twins(self) -> None:
        mother, mother_records = self.mother()
        birth = self.p.as_of - timedelta(days=self.rng.randint(0, 60))
        for order in (1, 2):
            baby = self.baby_person(mother, birth)
            for i, source in enumerate(self.sources_for(self.rng.randint(1, 2))):
                resource, info = self.patient(baby, source, "twin", nik=mother.nik, nik_kind="nik-ibu",
                                              name=self.baby_name(mother, order, canonical=i == 0),
                                              multiple_birth=order, keep_demographics=True)
                self.emit(resource, info, baby, related=mother_records)

    def no_nik(self) -> None:
        variant = self.rng.randrange(3)
        if variant == 0:
            person = self.new_person(nik=False)
            self.emit(*self.patient(person, self.pick(SOURCES), "no-nik", nik_kind=None), person)
        elif variant == 1:
            person = self.new_person(nik=False)
            for i, source in enumerate(self.sources_for(2)):
                self.emit(*self.patient(person, source, "no-nik-pair", canonical=i == 0, nik_kind=None),
                          person)
        else:
            person = self.new_person()
            copies = self.rng.randint(2, 3)
            for i, source in enumerate(self.sources_for(copies)):
                if i == copies - 1:
                    self.emit(*self.patient(person, source, "no-nik-partial", nik_kind=None), person)
                else:
                    self.emit(*self.patient(person, source, "duplicate", canonical=i == 0), person)

    def two_niks(self) -> None:
        person = self.new_person(age_range=(17, 80))
        first_nik = person.nik
        moved_to = self.pick([k for k in sorted(T.KECAMATAN) if k != person.kecamatan])
        second_nik = self.allocate_nik(moved_to, person.birth_date, person.gender)
        for i, (source, nik) in enumerate(zip(self.sources_for(self.rng.randint(2, 4)),
                                              [first_nik, second_nik, first_nik, second_nik])):
            self.emit(*self.patient(person, source, "two-niks", canonical=i == 0, nik=nik), person)

    def common_name(self) -> None:
        first = self.new_person(age_range=(20, 70))
        without_nik = self.chance(0.3)
        people = [first] + [
            self.new_person(tradition=first.tradition, gender=first.gender, birth_date=first.birth_date,
                            words=first.words, has_family=first.has_family, nik=not without_nik)
            for _ in range(self.rng.randint(1, 2))]
        for person in people:
            if without_nik:
                person.nik = None
            for i, source in enumerate(self.sources_for(self.rng.randint(1, 2))):
                self.emit(*self.patient(person, source, "same-name-birthdate", canonical=i == 0,
                                        nik_kind=None if without_nik else "nik"), person)

    def siblings(self) -> None:
        first = self.new_person(age_range=(1, 30))
        people = [first]
        for _ in range(self.rng.randint(1, 2)):
            gap = timedelta(days=self.rng.randint(500, 2400))
            birth = people[-1].birth_date + gap if self.chance(0.5) else people[-1].birth_date - gap
            gender = self.pick(("male", "female"))
            words, has_family = self.person_words(first.tradition, gender)
            if first.has_family:
                words[-1] = first.words[-1]
                has_family = True
            sibling = self.new_person(tradition=first.tradition, gender=gender, birth_date=birth, home=first,
                                      nik=False, words=words, has_family=has_family)
            sibling.nik = self.allocate_nik(first.kecamatan, birth, gender)
            people.append(sibling)
        for person in people:
            for i, source in enumerate(self.sources_for(self.rng.randint(1, 2))):
                self.emit(*self.patient(person, source, "sibling", canonical=i == 0), person)

    def run(self) -> GroundTruth:
        if self.p.mix == "lookalike":
            from tools.dataset.lookalike import LookalikeMix

            LookalikeMix(self).run()
            return self.truth
        groups = {name: getattr(self, name.replace("-", "_")) for name in GROUP_WEIGHTS}
        while len(self.truth.patients) < self.p.patients:
            remaining = self.p.patients - len(self.truth.patients)
            if remaining <= MAX_GROUP_RECORDS:
                self.ordinary(min(remaining, self.weighted(COPIES_WEIGHTS)))
                continue
            kind = self.weighted(GROUP_WEIGHTS)
            if kind == "ordinary":
                self.ordinary(self.weighted(COPIES_WEIGHTS))
            else:
                groups[kind]()
        return self.truth


class ClinicalRecord:
    """The clinical resources one patient record accumulates in its source system."""

    def __init__(self, gen: DistrictGenerator, patient: dict, info: PatientInfo, person: Person,
                 related: list[tuple[dict, str]]):
        self.g = gen
        self.patient = patient
        self.info = info
        self.person = person
        self.count = 0
        # a mother's record this baby's record may reference: same phase, or bulk (loaded earlier)
        allowed = [r for r, load in related if load == info.load or load == "bulk"]
        self.related = allowed[0] if allowed else None
        self.org = gen.pick(gen.orgs[info.source])
        self.staff = gen.practitioners[self.org["id"]]
        self.places = gen.locations[self.org["id"]]

    def put(self, resource: dict) -> dict:
        resource["id"] = self.g.new_id()
        self.g.writer.write(self.info.load, resource)
        self.count += 1
        return resource

    def subject(self) -> dict:
        return ref(self.patient)

    def generate(self) -> None:
        g = self.g
        mean = g.p.resources_per_patient
        budget = g.rng.randint(0, int(2 * mean)) if mean > 0 else 0
        if budget == 0:
            return
        first_day = max(self.person.birth_date, g.p.as_of - timedelta(days=5 * 365))
        coverage = self.coverage()
        chronic = g.chance(0.2) and (g.p.as_of - self.person.birth_date).days > 30 * 365
        episode = self.episode() if chronic else None
        if chronic:
            self.careplan()
        if g.chance(0.15):
            self.allergy()
        if g.chance(0.05):
            self.flag()
        immunizations = 2 if (g.p.as_of - self.person.birth_date).days < 5 * 365 else int(g.chance(0.2))
        for _ in range(immunizations):
            self.immunization(first_day)
        while self.count + 3 < budget:   # a visit adds ~7 resources; stop when the mean is met
            self.visit(g.when(first_day, g.p.as_of), coverage, episode)

    # each builder returns the resource it wrote
    def coverage(self) -> dict:
        g = self.g
        bpjs = g.chance(0.75)
        subscriber = self.related or self.patient
        resource = {"resourceType": "Coverage", "status": "active",
                    "type": codeable("http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                     "PUBLICPOL" if bpjs else "pay",
                                     "public healthcare" if bpjs else "PAY"),
                    "subscriber": ref(subscriber), "beneficiary": self.subject(),
                    "relationship": codeable("http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                                             "self" if subscriber is self.patient else "child",
                                             "Self" if subscriber is self.patient else "Child"),
                    "payor": [ref(g.bpjs) if bpjs else self.subject()]}
        if bpjs:
            resource["identifier"] = [{"system": "urn:source:pcare:noka",
                                       "value": f"000{g.rng.randrange(10**9, 10**10)}"}]
        return self.put(resource)

    def episode(self) -> dict:
        return self.put({"resourceType": "EpisodeOfCare", "status": "active", "patient": self.subject(),
                         "managingOrganization": ref(self.org),
                         "type": [codeable(None, None, "Program penyakit kronis (Prolanis)")]})

    def careplan(self) -> dict:
        return self.put({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                         "subject": self.subject(), "author": ref(self.g.pick(self.staff)),
                         "contributor": [self.subject()], "title": "Rencana kontrol rutin"})

    def allergy(self) -> dict:
        code, display = self.g.pick(T.ALLERGENS)
        return self.put({"resourceType": "AllergyIntolerance", "patient": self.subject(),
                         "clinicalStatus": codeable(
                             "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                             "active", "Active"),
                         "code": codeable(T.SNOMED, code, display),
                         "recorder": ref(self.g.pick(self.staff)), "asserter": self.subject()})

    def flag(self) -> dict:
        return self.put({"resourceType": "Flag", "status": "active", "subject": self.subject(),
                         "code": codeable(None, None, "Pasien perlu pendamping"), "author": ref(self.org)})

    def immunization(self, first_day: date) -> dict:
        code, display = self.g.pick(T.VACCINES)
        return self.put({"resourceType": "Immunization", "status": "completed",
                         "vaccineCode": codeable("http://hl7.org/fhir/sid/cvx", code, display),
                         "patient": self.subject(),
                         "occurrenceDateTime": self.g.iso(self.g.when(first_day, self.g.p.as_of)),
                         "performer": [{"actor": ref(self.g.pick(self.staff))}]})

    def visit(self, moment: datetime, coverage: dict, episode: dict | None) -> None:
        g = self.g
        doctor = g.pick(self.staff)
        place = g.pick(self.places)
        inpatient = self.info.source == "simrs" and g.chance(0.15)
        end = moment + (timedelta(days=g.rng.randint(1, 6)) if inpatient else timedelta(minutes=30))
        encounter = {"resourceType": "Encounter", "status": "finished",
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                               "code": "IMP" if inpatient else "AMB",
                               "display": "inpatient encounter" if inpatient else "ambulatory"},
                     "subject": self.subject(),
                     "participant": [{"individual": ref(doctor)}],
                     "period": {"start": g.iso(moment), "end": g.iso(end)},
                     "location": [{"location": ref(place)}], "serviceProvider": ref(self.org)}
        if episode is not None:
            encounter["episodeOfCare"] = [ref(episode)]
        if self.related is not None and g.chance(0.5):
            # who brought the baby in: a reference to the mother's record inside an extension
            encounter["extension"] = [{"url": "urn:dataset:extension:informant",
                                       "valueReference": ref(self.related)}]
        encounter = self.put(encounter)
        when = g.iso(moment)
        for code, display, unit, low, high in g.rng.sample(T.VITALS, g.rng.randint(1, 3)):
            value = round(g.rng.uniform(low, high), 1)
            observation = {"resourceType": "Observation", "status": "final",
                           "category": [codeable("http://terminology.hl7.org/CodeSystem/observation-category",
                                                 "vital-signs", "Vital Signs")],
                           "code": codeable(T.LOINC, code, display), "subject": self.subject(),
                           "encounter": ref(encounter), "effectiveDateTime": when,
                           "performer": [ref(doctor)],
                           "valueQuantity": {"value": value, "unit": unit, "system": T.UCUM, "code": unit}}
            if g.chance(0.1):   # self-measured at home and reported by the patient
                observation["performer"] = [self.subject()]
            self.put(observation)
        if g.chance(0.6):
            code, display, _ = g.pick(T.CONDITIONS)
            condition = {"resourceType": "Condition",
                         "clinicalStatus": codeable("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                    "active", "Active"),
                         "verificationStatus": codeable(
                             "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed",
                             "Confirmed"),
                         "code": codeable(T.ICD10, code, display), "subject": self.subject(),
                         "encounter": ref(encounter), "recordedDate": when, "recorder": ref(doctor)}
            if g.chance(0.2):
                condition["asserter"] = self.subject()
                condition["note"] = [{"authorReference": self.subject(), "text": "Keluhan sejak seminggu"}]
            self.put(condition)
        if g.chance(0.25):
            code, display = g.pick(T.PROCEDURES)
            self.put({"resourceType": "Procedure", "status": "completed", "code": codeable(T.SNOMED, code, display),
                      "subject": self.subject(), "encounter": ref(encounter), "performedDateTime": when,
                      "performer": [{"actor": ref(doctor)}], "asserter": self.subject()})
        if g.chance(0.5):
            medication = codeable(None, None, g.pick(T.MEDICATIONS))
            request = self.put({"resourceType": "MedicationRequest", "status": "completed", "intent": "order",
                                "medicationCodeableConcept": medication, "subject": self.subject(),
                                "encounter": ref(encounter), "authoredOn": when, "requester": ref(doctor),
                                "dosageInstruction": [{"text": "3 x 1 sesudah makan"}]})
            if g.chance(0.3):
                self.put({"resourceType": "MedicationAdministration", "status": "completed",
                          "medicationCodeableConcept": medication, "subject": self.subject(),
                          "context": ref(encounter), "effectiveDateTime": when, "request": ref(request),
                          "performer": [{"actor": self.subject() if g.chance(0.5) else ref(doctor)}]})
        if g.chance(0.25):
            self.lab(encounter, doctor, moment)
        if g.chance(0.05):
            self.imaging(encounter, doctor, moment)
        if g.chance(0.15):
            self.put({"resourceType": "DocumentReference", "status": "current", "subject": self.subject(),
                      "type": codeable(T.LOINC, "11506-3", "Progress note"), "date": when,
                      "author": [ref(doctor)] + ([self.subject()] if g.chance(0.2) else []),
                      "content": [{"attachment": {"contentType": "text/plain", "title": "Catatan kunjungan",
                                                  "data": "Q2F0YXRhbiBrdW5qdW5nYW4="}}],
                      "context": {"encounter": [ref(encounter)]}})
        if coverage["payor"][0]["reference"].startswith("Organization/") and g.chance(0.3):
            self.put({"resourceType": "Claim", "status": "active",
                      "type": codeable("http://terminology.hl7.org/CodeSystem/claim-type",
                                       "institutional" if inpatient else "professional",
                                       "Institutional" if inpatient else "Professional"),
                      "use": "claim", "patient": self.subject(), "created": when,
                      "provider": ref(self.org), "insurer": ref(g.bpjs),
                      "priority": codeable("http://terminology.hl7.org/CodeSystem/processpriority", "normal",
                                           "Normal"),
                      "insurance": [{"sequence": 1, "focal": True, "coverage": ref(coverage)}],
                      "item": [{"sequence": 1, "productOrService": codeable(None, None, "Paket kunjungan"),
                                "encounter": [ref(encounter)]}]})
        if g.chance(0.2):
            start = moment + timedelta(days=g.rng.randint(7, 30))
            appointment = {"resourceType": "Appointment", "status": "booked",
                           "start": start.strftime("%Y-%m-%dT%H:%M:00+07:00"),
                           "end": (start + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:00+07:00"),
                           "participant": [{"actor": self.subject(), "status": "accepted"},
                                           {"actor": ref(doctor), "status": "accepted"},
                                           {"actor": ref(place), "status": "accepted"}],
                           "description": "Kontrol"}
            if self.related is not None:
                appointment["participant"].append({"actor": ref(self.related), "status": "accepted"})
            self.put(appointment)

    def lab(self, encounter: dict, doctor: dict, moment: datetime) -> None:
        g = self.g
        when = g.iso(moment)
        order = self.put({"resourceType": "ServiceRequest", "status": "completed", "intent": "order",
                          "code": codeable(None, None, "Pemeriksaan laboratorium"), "subject": self.subject(),
                          "encounter": ref(encounter), "authoredOn": when, "requester": ref(doctor)})
        specimen = self.put({"resourceType": "Specimen", "status": "available",
                             "type": codeable(None, None, "Darah vena"), "subject": self.subject(),
                             "request": [ref(order)],
                             "collection": {"collector": ref(doctor), "collectedDateTime": when}})
        results = []
        for code, display, unit, low, high in g.rng.sample(T.LAB_TESTS, g.rng.randint(1, 2)):
            results.append(self.put({
                "resourceType": "Observation", "status": "final",
                "category": [codeable("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory",
                                      "Laboratory")],
                "code": codeable(T.LOINC, code, display), "subject": self.subject(), "encounter": ref(encounter),
                "effectiveDateTime": when, "specimen": ref(specimen), "basedOn": [ref(order)],
                "valueQuantity": {"value": round(g.rng.uniform(low, high), 1), "unit": unit, "system": T.UCUM,
                                  "code": unit}}))
        self.put({"resourceType": "DiagnosticReport", "status": "final",
                  "code": codeable(None, None, "Hasil laboratorium"), "subject": self.subject(),
                  "encounter": ref(encounter), "effectiveDateTime": when, "issued": when,
                  "performer": [ref(self.org)], "specimen": [ref(specimen)], "basedOn": [ref(order)],
                  "result": [ref(r) for r in results]})

    def imaging(self, encounter: dict, doctor: dict, moment: datetime) -> None:
        g = self.g
        order = self.put({"resourceType": "ServiceRequest", "status": "completed", "intent": "order",
                          "code": codeable(None, None, "Foto toraks"), "subject": self.subject(),
                          "encounter": ref(encounter), "authoredOn": g.iso(moment), "requester": ref(doctor)})
        uid = f"2.25.{g.rng.getrandbits(100)}"
        self.put({"resourceType": "ImagingStudy", "status": "available", "subject": self.subject(),
                  "encounter": ref(encounter), "started": g.iso(moment), "basedOn": [ref(order)],
                  "referrer": ref(doctor), "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
                  "series": [{"uid": f"{uid}.1", "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM",
                                                              "code": "DX"},
                              "instance": [{"uid": f"{uid}.1.1",
                                            "sopClass": {"system": "urn:ietf:rfc:3986",
                                                         "code": "urn:oid:1.2.840.10008.5.1.4.1.1.1.1"}}]}]})


def empty_dataset_dir(out_dir: str | Path) -> Path:
    """``out_dir``, created, without the NDJSON files of an earlier dataset (every writer replaces them)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for phase in PHASES:
        for old in (out / phase).glob("*.ndjson"):
            old.unlink()
    return out


def generate(out_dir: str | Path, params: Params, settings: Settings | None = None) -> GroundTruth:
    """Writes the dataset into ``out_dir`` (created; existing NDJSON files there are replaced)."""
    out = empty_dataset_dir(out_dir)
    writer = NdjsonWriter(out)
    try:
        truth = DistrictGenerator(params, settings or Settings(), writer).run()
    finally:
        writer.close()
    manifest = {"params": params.as_json(), "counts": writer.counts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    (out / "ground_truth.json").write_text(json.dumps(truth.as_json(), separators=(",", ":")) + "\n")
    return truth


def iter_resources(directory: str | Path, phase: str, resource_type: str) -> Iterator[dict]:
    path = Path(directory) / phase / f"{resource_type}.ndjson"
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
