"""The merge pipeline on the real emulators and FHIR server: merge, unmerge, redelivery, crashes,
concurrent clinical updates, a large merge. The pipeline is driven in process: call the service,
pull the messages it published, hand them to the next service."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from shared import bootstrap
from shared.adapters.merge_jobs import MergeJobs
from shared.concurrency import run_concurrently
from shared.domain.merge_request import RequestPlan
from shared.fhir.references import references_any, rewrite_patient_references, without_meta
from shared.messages import FinaliseMerge, MergeRequested, MergeTask
from shared.services.merge_deps import MergeDeps
from shared.services.merge_fanout import fan_out
from shared.services.merge_finalise import finalise
from shared.services.merge_preview import preview
from shared.services.merge_requests import MergeRequests
from shared.services.merge_worker import run_task
from shared.services.unmerge import unmerge

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"


def make_deps(settings, fhir, firestore_db, publisher) -> MergeDeps:
    return MergeDeps(settings=settings, fhir=fhir, jobs=MergeJobs(firestore_db, settings),
                     index=MergeRequests(settings, bootstrap.groups(settings), publisher,
                                         bootstrap.patient_keys(settings)), publisher=publisher)


def _patient(tag: str, nik: str, **extra) -> dict:
    return {"resourceType": "Patient", "id": f"{tag}-{uuid.uuid4().hex[:10]}",
            "identifier": [{"system": NIK_SYSTEM, "value": nik}, {"system": f"urn:src:{tag}", "value": tag.upper()}],
            "name": [{"text": "Test Person"}], **extra}


def clinical_resources(d1: str, d2: str, d3: str, master: str, other: str, base_url: str) -> list[dict]:
    """References to the duplicates in 19 resource types, many outside ``subject``, in every form."""
    code = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
    P = lambda pid: {"reference": f"Patient/{pid}"}  # noqa: E731
    return [
        {"resourceType": "Observation", "status": "final", "code": code, "subject": P(d1),
         "performer": [P(d2)],
         "extension": [{"url": "urn:test:about", "valueReference": {"reference": f"Patient/{d3}"}}]},
        {"resourceType": "Observation", "status": "final", "code": code,
         "subject": {"reference": f"Patient/{d2}/_history/1"}},
        {"resourceType": "Observation", "status": "final", "code": code,
         "subject": {"reference": f"{base_url}/Patient/{d3}"}},
        {"resourceType": "Encounter", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": P(d1)},
        {"resourceType": "Condition", "subject": P(d2), "asserter": P(d3), "code": code},
        {"resourceType": "Procedure", "status": "completed", "subject": P(d3), "performer": [{"actor": P(d1)}]},
        {"resourceType": "AllergyIntolerance", "patient": P(d1), "recorder": P(d2), "asserter": P(d3)},
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
         "medicationCodeableConcept": {"text": "paracetamol"}, "subject": P(d2)},
        {"resourceType": "DiagnosticReport", "status": "final", "code": code, "subject": P(d3)},
        {"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "BCG"},
         "patient": P(d1), "occurrenceDateTime": "2020-01-01"},
        {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": P(d2)},
        {"resourceType": "Flag", "status": "active", "code": {"text": "fall risk"}, "subject": P(d3)},
        {"resourceType": "EpisodeOfCare", "status": "active", "patient": P(d1)},
        {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": P(d2),
         "performer": [P(d3)]},
        {"resourceType": "Communication", "status": "completed", "subject": P(d1), "recipient": [P(d2)]},
        {"resourceType": "Coverage", "status": "active", "beneficiary": P(d3), "payor": [P(d1)]},
        {"resourceType": "Appointment", "status": "booked",
         "participant": [{"actor": P(d2), "status": "accepted"}]},
        {"resourceType": "Group", "type": "person", "actual": True, "member": [{"entity": P(d3)}]},
        {"resourceType": "RelatedPerson", "patient": P(d1)},
        {"resourceType": "Specimen", "subject": P(d2)},
        # Must stay untouched: only the master or someone else.
        {"resourceType": "Observation", "status": "final", "code": code, "subject": P(master)},
        {"resourceType": "Encounter", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": P(other)},
    ]


def seed_nik(fhir, base_url: str, extra_per_duplicate: int = 0) -> dict:
    """A NIK with a master and 3 duplicates (plus an unrelated patient) and their clinical data."""
    nik = f"3171{uuid.uuid4().int % 10**12:012d}"
    master = _patient("m", nik, telecom=[{"system": "phone", "value": "0811"}], gender="female")
    dups = [
        _patient("d1", nik, birthDate="1990-01-02", telecom=[{"system": "phone", "value": "0822"}]),
        _patient("d2", nik, birthDate="1990-01-02", address=[{"city": "Bogor"}]),
        _patient("d3", nik, active=True),
    ]
    other = _patient("x", f"3172{uuid.uuid4().int % 10**12:012d}")
    patients = [fhir.update(p) for p in [master, *dups, other]]
    ids = [p["id"] for p in patients]
    resources = clinical_resources(ids[1], ids[2], ids[3], ids[0], ids[4], base_url)
    resources += [{"resourceType": "Observation", "status": "final", "code": {"text": f"bulk {i}"},
                   "subject": {"reference": f"Patient/{ids[1]}"}} for i in range(extra_per_duplicate)]
    created = []
    for start in range(0, len(resources), 200):
        outcomes = fhir.batch([{"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
                               for r in resources[start:start + 200]])
        assert all(o.ok for o in outcomes), [o.status for o in outcomes if not o.ok][:5]
        created += [o.resource for o in outcomes]
    return {"nik": nik, "master": ids[0], "duplicates": ids[1:4], "other": ids[4],
            "patients": {p["id"]: p for p in patients}, "resources": created}


def open_request(deps: MergeDeps, seeded: dict) -> MergeRequested:
    """Opens the request the way matching does, with the master already golden so claim keeps it."""
    group = f"nik_index/tok-{uuid.uuid4().hex[:16]}"

    def open_with_golden_master(tx):
        tx.group.members[seeded["master"]] = {"status": "master", "golden": True, "active": True}
        return tx.group.open_request(RequestPlan(seeded["master"], tuple(seeded["duplicates"]), "nik-exact",
                                                 "matching", {"rule": "nik-exact", "score": 100}))

    request = bootstrap.groups(deps.settings).transact(group, open_with_golden_master)
    return MergeRequested(request_id=request.id, group=group, nik_token=group.split("/", 1)[1],
                          master=request.master, duplicates=tuple(request.duplicates), reason="nik-exact",
                          requested_by="matching", evidence={"rule": "nik-exact"})


def pull_tasks(topics, settings, count: int) -> list[MergeTask]:
    return [MergeTask.from_dict(task) for task in topics.pull(settings.topic_merge_tasks, timeout=20, count=count)]


def pull_finalise(topics, settings) -> list[FinaliseMerge]:
    return [FinaliseMerge.from_dict(final) for final in topics.pull(settings.topic_merge_finalise, timeout=10,
                                                                    count=1)]


def run_merge(deps: MergeDeps, topics, message: MergeRequested, *, deliver_twice: bool = False,
              parallel: int = 1) -> dict:
    """Drives fan-out -> tasks -> finaliser by pulling the topics in process; ``parallel`` tasks run
    at once, as concurrent function instances would."""
    settings = deps.settings
    job = fan_out(message, deps)
    expected = sum(1 for t in job["types"].values() if t["status"] == "pending")
    tasks = pull_tasks(topics, settings, expected)
    assert len(tasks) == expected

    def deliver(task):
        run_task(task, deps)
        if deliver_twice:
            run_task(task, deps)

    run_concurrently(deliver, tasks, parallel)
    finals = pull_finalise(topics, settings)
    assert len(finals) == 1
    finalise(finals[0], deps)
    if deliver_twice:
        finalise(finals[0], deps)
    return deps.jobs.get(message.request_id)


def snapshot(fhir, resources: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["resourceType"], r["id"]): fhir.read(r["resourceType"], r["id"]) for r in resources}


def assert_merged(fhir, settings, seeded: dict, before: dict) -> None:
    """No resource references a duplicate; each is otherwise unchanged; patients linked; Provenance."""
    master, dups = seeded["master"], seeded["duplicates"]
    replacements = {d: master for d in dups}
    for key, original in before.items():
        now = fhir.read(*key)
        assert not references_any(now, dups), key
        expected, _ = rewrite_patient_references(original, replacements)
        assert without_meta(now) == without_meta(expected), key
    for dup in dups:
        patient = fhir.read("Patient", dup)
        assert patient["active"] is False
        assert {"other": {"reference": f"Patient/{master}"}, "type": "replaced-by"} in patient["link"]
    golden = fhir.read("Patient", master)
    assert {"system": settings.golden_tag_system, "code": master} in golden["meta"]["tag"]
    assert {f"Patient/{d}" for d in dups} <= {link["other"]["reference"] for link in golden["link"]
                                            if link["type"] == "replaces"}
    assert golden["birthDate"] == "1990-01-02" and golden["gender"] == "female"
    assert {"system": "urn:src:d1", "value": "D1", "use": "old"} in golden["identifier"]
    provenances = list(fhir.search("Provenance", [("target", f"Patient/{master}")]))
    merges = [p for p in provenances if p["activity"]["coding"][0]["code"] == "merge"]
    assert len(merges) == 1
    assert sorted(e["what"]["reference"].split("/_history")[0] for e in merges[0]["entity"]) == \
        sorted(f"Patient/{d}" for d in dups)


# --------------------------------------------------------------------------------------------
# tests

@pytest.fixture
def deps(settings, fhir, firestore_db, publisher):
    return make_deps(settings, fhir, firestore_db, publisher)


def test_merge_then_unmerge_restores_everything(deps, fhir, settings, topics):
    seeded = seed_nik(fhir, settings.fhir_base_url)
    referencing = [r for r in seeded["resources"] if references_any(r, seeded["duplicates"])]
    assert len({r["resourceType"] for r in referencing}) >= 12
    before = snapshot(fhir, seeded["resources"])
    patients_before = {pid: fhir.read("Patient", pid) for pid in seeded["patients"]}

    assert preview(seeded["master"], seeded["duplicates"], deps) == dict(
        Counter(r["resourceType"] for r in referencing))

    job = run_merge(deps, topics, open_request(deps, seeded))
    assert job["status"] == "done"
    assert sum(t.get("rewritten", 0) for t in job["types"].values()) == len(referencing)
    assert job["types"]["Provenance"]["status"] == "skipped"
    assert_merged(fhir, settings, seeded, before)
    group = bootstrap.groups(settings).get(job["group"])
    assert group.request.status == "done"

    report = unmerge(job["job_id"], deps)
    assert report.conflicts == [] and report.restored == len(referencing) and report.patients == 4
    for key, original in before.items():
        assert without_meta(fhir.read(*key)) == without_meta(original), key
    for pid, original in patients_before.items():
        assert without_meta(fhir.read("Patient", pid)) == without_meta(original), pid
    assert deps.jobs.get(job["job_id"])["status"] == "unmerged"


def test_every_message_delivered_twice(deps, fhir, settings, topics):
    seeded = seed_nik(fhir, settings.fhir_base_url)
    before = snapshot(fhir, seeded["resources"])
    message = open_request(deps, seeded)
    job = run_merge(deps, topics, message, deliver_twice=True)
    assert job["status"] == "done"
    assert_merged(fhir, settings, seeded, before)
    # the finalise message went out once; a replayed request re-publishes nothing
    assert topics.pull(settings.topic_merge_finalise, timeout=2, count=None) == []
    fan_out(message, deps)
    assert topics.pull(settings.topic_merge_tasks, timeout=2, count=None) == []
    provenances = list(fhir.search("Provenance", [("target", f"Patient/{seeded['master']}")]))
    assert len(provenances) == 1


class Crash(RuntimeError):
    """An injected crash of the process at one step."""


class CrashOnce:
    """Wraps an adapter; the n-th call of ``method`` crashes once, before or after doing its work."""

    def __init__(self, inner, method: str, call: int = 1, after: bool = False, when=None):
        self._inner, self._method, self._call, self._after, self._when = inner, method, call, after, when
        self.calls = 0
        self.crashed = False

    def __getattr__(self, name):
        attribute = getattr(self._inner, name)
        if name != self._method:
            return attribute

        def wrapped(*args, **kwargs):
            if self._when is None or self._when(*args, **kwargs):
                self.calls += 1
            fire = not self.crashed and self.calls == self._call and (self._when is None or self._when(*args, **kwargs))
            if fire and not self._after:
                self.crashed = True
                raise Crash(f"before {name}")
            result = attribute(*args, **kwargs)
            if fire:
                self.crashed = True
                raise Crash(f"after {name}")
            return result

        return wrapped


def _deliver(fn, message, deps):
    """Pub/Sub redelivers a message whose handler raised."""
    for _ in range(5):
        try:
            return fn(message, deps)
        except Crash:
            continue
    raise AssertionError("still crashing after 5 deliveries")


def _is_patient_batch(entries):
    return bool(entries) and entries[0]["request"]["url"].startswith("Patient/")


def _is_observation_batch(entries):
    return bool(entries) and entries[0]["request"]["url"].startswith("Observation/")


CRASHES = {
    "fanout-publish-task": ("publisher", "send", dict(call=3)),
    "fanout-claim": ("index", "claim_request", dict(after=True)),
    "worker-after-fhir-write": ("fhir", "batch", dict(after=True, when=_is_observation_batch)),
    "worker-before-journal-done": ("jobs", "journal_put", dict(call=2)),
    "worker-before-task-done": ("jobs", "record_task", dict()),
    "worker-publish-finalise": ("publisher", "send", dict(when=lambda message, *_a, **_k: isinstance(message,
                                                                                                  FinaliseMerge))),
    "finaliser-after-patient-write": ("fhir", "batch", dict(after=True, when=_is_patient_batch)),
    "finaliser-provenance": ("fhir", "create", dict(after=True)),
    "finaliser-complete-request": ("index", "complete_request", dict(after=True)),
}


@pytest.mark.parametrize("crash", sorted(CRASHES))
def test_crash_at_each_step_then_redelivery(crash, deps, fhir, settings, topics):
    seeded = seed_nik(fhir, settings.fhir_base_url)
    before = snapshot(fhir, seeded["resources"])
    patients_before = {pid: fhir.read("Patient", pid) for pid in seeded["patients"]}
    message = open_request(deps, seeded)
    attribute, method, options = CRASHES[crash]
    faulty = CrashOnce(getattr(deps, attribute), method, **options)
    setattr(deps, attribute, faulty)

    job = _deliver(fan_out, message, deps)
    expected = sum(1 for t in job["types"].values() if t["status"] == "pending")
    tasks = pull_tasks(topics, settings, expected)
    assert {t.resource_type for t in tasks} == {t for t, s in job["types"].items() if s["status"] == "pending"}
    for task in tasks:
        _deliver(run_task, task, deps)
    finals = pull_finalise(topics, settings)
    assert len(finals) == 1
    _deliver(finalise, finals[0], deps)
    assert faulty.crashed, "the injected crash did not happen"
    job = deps.jobs.get(message.request_id)
    assert job["status"] == "done"
    assert_merged(fhir, settings, seeded, before)
    # also if the provenance crash left a second one behind, the unmerge below must still be exact
    report = unmerge(job["job_id"], deps)
    assert report.conflicts == []
    for key, original in before.items():
        assert without_meta(fhir.read(*key)) == without_meta(original), key
    for pid, original in patients_before.items():
        assert without_meta(fhir.read("Patient", pid)) == without_meta(original), pid


class UpdateBeforeFirstWrite:
    """A clinician edits a resource between the worker's search (read) and its batch write."""

    def __init__(self, inner, target: dict):
        self._inner, self._target, self.done = inner, target, False

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def batch(self, entries):
        urls = {e["request"]["url"] for e in entries}
        if not self.done and f"{self._target['resourceType']}/{self._target['id']}" in urls:
            current = self._inner.read(self._target["resourceType"], self._target["id"])
            current["note"] = [{"text": "clinical update during the merge"}]
            self._inner.update(current)
            self.done = True
        return self._inner.batch(entries)


def test_clinical_update_between_read_and_write_is_not_lost(deps, fhir, settings, topics):
    seeded = seed_nik(fhir, settings.fhir_base_url)
    target = next(r for r in seeded["resources"] if r["resourceType"] == "Observation"
                  and references_any(r, seeded["duplicates"]))
    deps.fhir = UpdateBeforeFirstWrite(fhir, target)
    job = run_merge(deps, topics, open_request(deps, seeded))
    assert deps.fhir.done and job["status"] == "done"
    now = fhir.read("Observation", target["id"])
    assert now["note"] == [{"text": "clinical update during the merge"}]
    assert not references_any(now, seeded["duplicates"])
    assert job["types"]["Observation"]["conflicts"] >= 1
    # unmerge restores the version the merge rewrote (with the clinician's note), not an older one
    unmerge(job["job_id"], deps)
    restored = fhir.read("Observation", target["id"])
    assert restored["note"] == now["note"]
    assert restored["subject"] == target["subject"]


def test_unmerge_reports_resources_changed_since_the_merge(deps, fhir, settings, topics):
    seeded = seed_nik(fhir, settings.fhir_base_url)
    job = run_merge(deps, topics, open_request(deps, seeded))
    changed = next(r for r in seeded["resources"] if r["resourceType"] == "Condition")
    current = fhir.read("Condition", changed["id"])
    current["note"] = [{"text": "edited after the merge"}]
    fhir.update(current)
    report = unmerge(job["job_id"], deps)
    assert report.conflicts == [{"resource_type": "Condition", "id": changed["id"], "reason": "changed-since-merge"}]
    assert fhir.read("Condition", changed["id"])["note"] == current["note"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [0, 1980], ids=["one-nik", "2000-references"])
def test_merge_counts_requests_and_time(extra, deps, settings, topics, fault_proxy, capsys):
    """One NIK with 3 duplicates (20 referencing resources, or 2,000 with most on one duplicate);
    the FHIR requests of the whole merge are counted by a proxy in front of the server."""
    import time

    from shared.fhir.client import FhirClient

    proxy = fault_proxy()
    with FhirClient(proxy.base_url) as counted:
        seeded = seed_nik(counted, settings.fhir_base_url, extra_per_duplicate=extra)
        referencing = [r for r in seeded["resources"] if references_any(r, seeded["duplicates"])]
        assert len(referencing) == 20 + extra
        deps.fhir = counted
        message = open_request(deps, seeded)
        proxy.reset_counts()
        began = time.monotonic()
        job = run_merge(deps, topics, message, parallel=8)
        seconds = time.monotonic() - began
        requests = proxy.total
        by_kind = Counter(method for method, _ in proxy.counts_by().elements())
        leftovers = list(counted.search("Observation", [("subject", f"Patient/{seeded['duplicates'][0]}")]))
    assert job["status"] == "done"
    assert sum(t.get("rewritten", 0) for t in job["types"].values()) == len(referencing)
    assert leftovers == []
    with capsys.disabled():
        print(f"\nMERGE METRICS: {len(referencing)} rewritten resources, 3 duplicates, "
              f"{sum(t['status'] == 'done' for t in job['types'].values())} types searched: "
              f"{requests} FHIR requests ({dict(by_kind)}), "
              f"{seconds:.1f} s wall (8 tasks at once)")


def test_task_results_count_once_and_return_what_remains(deps):
    """A task that failed once and then succeeded keeps both attempts' counts; its completed journal
    entries land with its result; a duplicate delivery changes nothing; the commit itself says how
    many tasks remain, and the last one reports zero."""
    jobs, job_id = deps.jobs, f"job-{uuid.uuid4().hex[:10]}"
    jobs.create({"job_id": job_id, "status": "running", "master": "m", "duplicates": ["d"],
                 "types": {"Observation": {"status": "pending", "params": ["subject"]},
                           "Encounter": {"status": "pending", "params": ["patient"]},
                           "Flag": {"status": "done", "via": "everything"}}})
    assert jobs.get(job_id)["remaining"] == 2

    assert jobs.record_task(job_id, "Observation", {"status": "failed", "rewritten": 3, "found": 4,
                                                    "conflicts": 1, "failures": [{"id": "o9"}]}) is None
    previous = jobs.get(job_id, ["types.Observation"])["types"]["Observation"]
    done = {"resource_type": "Observation", "id": "o1", "version_after": "2", "status": "done"}
    assert jobs.record_task(job_id, "Observation", {"status": "done", "rewritten": 1, "found": 1, "conflicts": 0,
                                                    "failures": []}, previous=previous, journal_done=[done]) == 1
    # a second delivery of the same task: counted once, nothing about the remaining count is claimed
    assert jobs.record_task(job_id, "Observation", {"status": "done", "rewritten": 0, "found": 0, "conflicts": 0,
                                                    "failures": []}, previous=previous) is None
    job = jobs.get(job_id)
    assert job["remaining"] == 1
    assert {k: job["types"]["Observation"][k] for k in ("status", "rewritten", "found", "conflicts", "failures")} == \
        {"status": "done", "rewritten": 4, "found": 5, "conflicts": 1, "failures": []}
    assert [e for e in jobs.journal_entries(job_id) if e["id"] == "o1"] == [done]
    assert jobs.record_task(job_id, "Encounter", {"status": "done", "rewritten": 0, "found": 0, "conflicts": 0,
                                                  "failures": []}, previous={"status": "pending"}) == 0
    assert jobs.get(job_id, ["status", "remaining"]) == {"status": "running", "remaining": 0}


class WithoutEverything:
    """The same FHIR client, on a server that does not declare ``Patient/$everything`` (HAPI can be
    configured so): the fan-out gives every type a task and the workers and the sweep search."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def capability(self) -> dict:
        capability = self._inner.capability()
        rest = [{**r, "resource": [{**res, "operation": [op for op in res.get("operation") or []
                                                           if (op.get("name") or "").lstrip("$") != "everything"]}
                                   for res in r.get("resource") or []]} for r in capability.get("rest") or []]
        return {**capability, "rest": rest}


def test_merge_without_everything_searches_every_type(deps, fhir, settings, topics):
    from shared.services.rewrite import supports_everything

    plain = MergeDeps(settings=deps.settings, fhir=WithoutEverything(deps.fhir), jobs=deps.jobs, index=deps.index,
                      publisher=deps.publisher)
    assert supports_everything(fhir.capability()) and not supports_everything(plain.fhir.capability())
    seeded = seed_nik(fhir, settings.fhir_base_url)
    before = snapshot(fhir, seeded["resources"])
    job = run_merge(plain, topics, open_request(plain, seeded), parallel=4)
    assert job["status"] == "done"
    assert not any(t.get("via") == "everything" for t in job["types"].values())
    assert sum(t.get("rewritten", 0) for t in job["types"].values()) >= len(seeded["resources"]) - 2
    assert_merged(fhir, settings, seeded, before)
