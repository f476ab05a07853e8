"""Explicit merges: a human (the ops CLI's `dedup merge`, the `Patient/$merge` operation) names the
master and the records to merge into it. Any records, NIK or not: the request is opened in the
master's group with the others joining it (``shared.domain.explicit_merge``), and the merge pipeline
runs it like any other request, keeping the chosen master.

Before anything is written: the ids must differ, every patient must exist, and be active and not
replaced already (a merge of a merged record would chain replaced-by links).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import Settings
from shared.domain.explicit_merge import plan_explicit_merge
from shared.domain.group import NIK_GROUPS
from shared.domain.patient import member_record, patient_facts
from shared.fhir.errors import Gone, NotFound
from shared.logging import get_logger
from shared.ports.fhir import FhirPort
from shared.ports.index import GroupRepository, PatientKeyRepository
from shared.services.matching import MatchingService
from shared.services.merge_requests import MergeRequests

log = get_logger(__name__)


class MergeInputInvalid(ValueError):
    """The ids themselves are wrong (none, the same twice, the master among the duplicates)."""


class PatientMissing(LookupError):
    """A named patient does not exist."""


class MergeRefused(RuntimeError):
    """A business rule refuses the merge (inactive or replaced record, newborn/twin rule, busy group).
    ``reasons``: patient id -> rule."""

    def __init__(self, message: str, reasons: dict[str, str] | None = None):
        super().__init__(message)
        self.reasons = reasons or {}


@dataclass
class ExplicitMergeOutcome:
    request_id: str | None
    group: str
    master: str
    duplicates: list[str]                                   # the ones the request merges
    refused: dict[str, str] = field(default_factory=dict)   # patient id -> rule that refused it
    published: bool = False


def replaced_by(patient: dict) -> str | None:
    for link in patient.get("link") or []:
        if link.get("type") == "replaced-by":
            return (link.get("other") or {}).get("reference") or "?"
    return None


def check_ids(master: str, duplicates: list[str]) -> list[str]:
    """The duplicates, deduplicated; raises ``MergeInputInvalid`` for what can never be a merge."""
    unique = list(dict.fromkeys(d for d in duplicates if d))
    if not master or not unique:
        raise MergeInputInvalid("a merge needs a master and at least one duplicate")
    if master in unique:
        raise MergeInputInvalid(f"Patient/{master} is both the master and a duplicate")
    return unique


def read_patients(fhir: FhirPort, ids: list[str], *, must_be_active: bool = True) -> dict[str, dict]:
    """{id: Patient}; ``PatientMissing`` for an unknown id, ``MergeRefused`` for an inactive or replaced one."""
    patients = {}
    for pid in ids:
        try:
            patients[pid] = fhir.read("Patient", pid)
        except (NotFound, Gone):
            raise PatientMissing(f"Patient/{pid} does not exist") from None
    if must_be_active:
        for pid, patient in patients.items():
            if replaced_by(patient):
                raise MergeRefused(f"Patient/{pid} was already replaced by {replaced_by(patient)}",
                                   {pid: "already-replaced"})
            if patient.get("active") is False:
                raise MergeRefused(f"Patient/{pid} is inactive", {pid: "inactive"})
    return patients


class ExplicitMerges:
    def __init__(self, settings: Settings, matching: MatchingService, groups: GroupRepository,
                 keys: PatientKeyRepository, requests: MergeRequests, fhir: FhirPort):
        self._settings = settings
        self._matching = matching
        self._groups = groups
        self._keys = keys
        self._requests = requests
        self._fhir = fhir

    def check(self, master: str, duplicates: list[str]) -> tuple[list[str], dict[str, dict]]:
        """(duplicates, patients) after every check that reads nothing but FHIR."""
        unique = check_ids(master, duplicates)
        return unique, read_patients(self._fhir, [master, *unique])

    def merge(self, master: str, duplicates: list[str], *, reason: str, requested_by: str,
              evidence: dict | None = None) -> ExplicitMergeOutcome:
        """``evidence``: more for the request's evidence (``Patient/$merge`` names its Task there)."""
        unique, patients = self.check(master, duplicates)
        # Index every named record now (a bulk import sent no notifications), publishing nothing yet.
        touched: set[str] = set()
        for pid in [master, *unique]:
            touched.update(self._matching.index_patient(patients[pid], self._keys.get(pid), publish=False).groups)
        master_keys = self._keys.get(master)
        groups = master_keys.groups if master_keys else []
        if not groups:
            raise MergeInputInvalid(f"Patient/{master} has no NIK and no birth date with gender, so it is in no "
                                    "index group; choose another record as the master")
        group_id = next((g for g in groups if g.startswith(NIK_GROUPS + "/")), groups[0])
        records = {pid: member_record(patient_facts(patients[pid], self._settings)) for pid in [master, *unique]}
        confirmation = self._groups.transact(group_id, lambda tx: plan_explicit_merge(
            tx.group, master, unique, records, reason=reason, requested_by=requested_by, settings=self._settings,
            evidence=evidence))
        request = confirmation.request
        outcome = ExplicitMergeOutcome(request.id if request else None, group_id, master,
                                       list(request.duplicates) if request else [], dict(confirmation.refused))
        # Records that joined from elsewhere: their keys name the group, so a delete or change finds them.
        for pid in outcome.duplicates:
            keys = self._keys.get(pid)
            if keys is not None and group_id not in keys.all_groups:
                keys.linked = [*keys.linked, group_id]
                self._keys.put(keys)
        if request is not None:
            outcome.published = self._requests.publish(group_id, request) is not None
        self._requests.publish_open(touched - {group_id})
        log.info("explicit_merge_requested", request_id=outcome.request_id, master=master,
                 duplicates=outcome.duplicates, refused=outcome.refused, requested_by=requested_by)
        if request is None:
            raise MergeRefused("nothing to merge: refused by rule "
                               + ", ".join(f"Patient/{pid}: {rule}" for pid, rule in sorted(outcome.refused.items())),
                               outcome.refused)
        return outcome
