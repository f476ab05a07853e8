"""A district in memory for the merge use cases' tests: three records of one person (one NIK) matched
by the matching service, someone else, and clinical resources of several types referencing them. The
pipeline is driven as Pub/Sub drives it: each message the publisher recorded goes, as its JSON body,
to the next use case; a handler that raises gets the message again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shared.config import Settings
from shared.fhir.references import references_any, rewrite_patient_references, without_meta
from shared.messages import FinaliseMerge, MergeRequested, MergeTask, Message, PatientChange
from shared.services.merge_deps import MergeDeps, MergeTaskFailed
from shared.services.merge_fanout import fan_out
from shared.services.merge_finalise import finalise
from shared.services.merge_worker import run_task
from tests.fakes import FakeServices, InjectedFailure, InMemoryFhir, PublishFailed, patient_resource

SETTINGS = Settings()
NIK = "3201011505900001"
OTHER_NIK = "3201011505900002"
CODE = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
# What makes Pub/Sub deliver a message again: the handler raised (an injected crash, or a use case
# that could not finish).
REDELIVERED_ON = (InjectedFailure, PublishFailed, MergeTaskFailed)


def ref(patient_id: str) -> dict:
    return {"reference": f"Patient/{patient_id}"}


def clinical_resources(master: str, d1: str, d2: str, other: str, base_url: str) -> list[dict]:
    """References to the duplicates in seven types and several elements and forms (versioned,
    absolute); one Observation references both duplicates; two resources must stay as they are."""
    return [
        {"resourceType": "Observation", "status": "final", "code": CODE, "subject": ref(d1), "performer": [ref(d2)]},
        {"resourceType": "Observation", "status": "final", "code": CODE,
         "subject": {"reference": f"Patient/{d2}/_history/1"}},
        {"resourceType": "Observation", "status": "final", "code": CODE,
         "subject": {"reference": f"{base_url}Patient/{d1}"}},
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": ref(d1)},
        {"resourceType": "Condition", "code": CODE, "subject": ref(d2), "asserter": ref(d1)},
        {"resourceType": "AllergyIntolerance", "patient": ref(d1), "recorder": ref(d2)},
        {"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "BCG"}, "patient": ref(d2),
         "occurrenceDateTime": "2020-01-01"},
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
         "medicationCodeableConcept": {"text": "paracetamol"}, "subject": ref(d1)},
        {"resourceType": "RelatedPerson", "patient": ref(d2)},
        # untouched: the master's own, and someone else's
        {"resourceType": "Observation", "status": "final", "code": CODE, "subject": ref(master)},
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": ref(other)},
    ]


@dataclass
class MergeWorld:
    services: FakeServices
    master: str
    duplicates: list[str]
    other: str
    request: MergeRequested                        # as matching published it
    patients_before: dict[str, dict]               # patient id -> the record before the merge
    clinical_before: dict[tuple[str, str], dict]   # (type, id) -> the resource before the merge
    _taken: dict[type, int] = field(default_factory=dict)

    @property
    def deps(self) -> MergeDeps:
        return self.services.merge_deps

    @property
    def fhir(self) -> InMemoryFhir:
        return self.services.fhir

    def take(self, message_type: type[Message]) -> list:
        """The ``message_type`` messages published since the last ``take``, decoded from their JSON
        bodies as the entry point decodes them."""
        published = [message for _, message in self.services.publisher.sent if isinstance(message, message_type)]
        fresh = published[self._taken.get(message_type, 0):]
        self._taken[message_type] = len(published)
        return [message_type.from_json(message.to_json()) for message in fresh]

    def referencing(self) -> dict[tuple[str, str], dict]:
        """The clinical resources that referenced a duplicate before the merge."""
        return {key: r for key, r in self.clinical_before.items() if references_any(r, self.duplicates)}


def seeded_world(fhir: InMemoryFhir | None = None, clock: Callable | None = None) -> MergeWorld:
    """Matching has seen every patient: the NIK's group holds an open, published merge request."""
    services = FakeServices(SETTINGS, fhir=fhir, clock=clock)
    records = [
        patient_resource(SETTINGS, "Budi Santoso", NIK, source="simrs", phone="0811"),
        patient_resource(SETTINGS, "Budi Santoso", NIK, source="simpus", phone="0822",
                         identifier=[{"system": "urn:src:simpus", "value": "RM-22"}]),
        patient_resource(SETTINGS, "Tn. Budi Santoso", NIK, source="simpus", address=[{"city": "Bogor"}]),
        patient_resource(SETTINGS, "Agus Wijaya", OTHER_NIK, source="simrs"),
    ]
    patients = [services.fhir.create(record) for record in records]
    for patient in patients:
        services.matching.handle_change(PatientChange(patient["id"], "upsert"))
    master, d1, d2, other = (p["id"] for p in patients)
    clinical = [services.fhir.create(r) for r in clinical_resources(master, d1, d2, other, services.fhir.base_url)]
    [request] = services.merge_requests_published()
    world = MergeWorld(services, master, [d1, d2], other, MergeRequested.from_dict(request),
                       {p["id"]: p for p in patients}, {(r["resourceType"], r["id"]): r for r in clinical})
    world.take(MergeRequested)
    return world


def deliver(handler: Callable, message, deps: MergeDeps, attempts: int = 6):
    """Pub/Sub's delivery: a handler that raises gets the message again."""
    for _ in range(attempts - 1):
        try:
            return handler(message, deps)
        except REDELIVERED_ON:
            continue
    return handler(message, deps)


def run_merge(world: MergeWorld, *, twice: bool = False) -> dict:
    """merge-requests -> fan-out -> every task -> the finaliser, each message delivered (``twice``:
    delivered again after it was handled, as Pub/Sub may)."""
    times = 2 if twice else 1
    for _ in range(times):
        deliver(fan_out, world.request, world.deps)
    for task in world.take(MergeTask):
        for _ in range(times):
            deliver(run_task, task, world.deps)
    finals = world.take(FinaliseMerge)
    assert len(finals) == 1, f"{len(finals)} finalise messages"
    for _ in range(times):
        deliver(finalise, finals[0], world.deps)
    return world.deps.jobs.get(world.request.request_id)


def provenances(world: MergeWorld, activity: str) -> list[dict]:
    return [p for p in world.fhir.resources("Provenance")
            if p["activity"]["coding"][0]["code"] == activity and p["target"][0]["reference"].startswith(
                f"Patient/{world.master}")]


def assert_merged(world: MergeWorld) -> None:
    """Every reference on the master and nothing else changed; duplicates inactive and pointing to the
    master; the master golden and pointing to them; one merge Provenance; the request done."""
    fhir, master, duplicates = world.fhir, world.master, world.duplicates
    for key, before in world.clinical_before.items():
        now = fhir.read(*key)
        assert not references_any(now, duplicates), key
        expected, _ = rewrite_patient_references(before, {d: master for d in duplicates})
        assert without_meta(now) == without_meta(expected), key
    for duplicate in duplicates:
        patient = fhir.read("Patient", duplicate)
        assert patient["active"] is False
        assert {"other": ref(master), "type": "replaced-by"} in patient["link"]
    golden = fhir.read("Patient", master)
    assert {"system": SETTINGS.golden_tag_system, "code": master} in golden["meta"]["tag"]
    assert sorted(link["other"]["reference"] for link in golden["link"] if link["type"] == "replaces") == \
        sorted(f"Patient/{d}" for d in duplicates)
    assert {"system": "urn:src:simpus", "value": "RM-22", "use": "old"} in golden["identifier"]
    assert {"system": "phone", "value": "0822"} in golden["telecom"]
    assert without_meta(fhir.read("Patient", world.other)) == without_meta(world.patients_before[world.other])
    [provenance] = provenances(world, "merge")
    assert sorted(e["what"]["reference"].split("/_history")[0] for e in provenance["entity"]) == \
        sorted(f"Patient/{d}" for d in duplicates)
    job = world.deps.jobs.get(world.request.request_id)
    assert job["status"] == "done" and job["provenance_id"] == provenance["id"]
    group = world.services.groups.get(world.request.group)
    assert group.request.status == "done" and group.master == master
    assert all(group.members[d]["status"] == "merged" for d in duplicates)


def assert_restored(world: MergeWorld, *, except_keys: set = frozenset()) -> None:
    """Every resource and patient exactly as before the merge (but ``except_keys``)."""
    for key, before in world.clinical_before.items():
        if key not in except_keys:
            assert without_meta(world.fhir.read(*key)) == without_meta(before), key
    for pid, before in world.patients_before.items():
        assert without_meta(world.fhir.read("Patient", pid)) == without_meta(before), pid
