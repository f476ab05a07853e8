"""FHIR's ``Patient/$merge`` operation (R5 / HAPI FHIR style) on the explicit-merge use case.

Input Parameters: ``source-patient`` (Reference) or ``source-patient-identifier`` (Identifier, repeatable),
``target-patient`` or ``target-patient-identifier``, ``result-patient`` (the target as it should be
afterwards; same id), ``preview`` (boolean). Output Parameters: ``input``, ``outcome``, ``result`` (the
target Patient) and, when the merge runs on, ``task``.

- 200: previewed, or completed within the wait (``Settings.patient_merge_wait_seconds``);
- 202: accepted and running on (asked with ``Prefer: respond-async``, or longer than the wait), with a
  Task whose status the finaliser moves to ``completed`` (``shared.services.merge_task``);
- 400: not a merge request (not Parameters, a parameter missing, malformed, or twice);
- 422: a business rule: unknown or ambiguous patient, the same patient twice, an inactive or already
  replaced source or target, a newborn/twin rule, another merge of the group running.
"""

from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass
from typing import Any

from shared.config import Settings
from shared.domain.survivorship import fill_master
from shared.fhir.references import patient_id_of
from shared.logging import get_logger
from shared.ports.fhir import FhirPort
from shared.ports.merge_jobs import MergeJobsRepository
from shared.services.explicit_merge import ExplicitMerges, MergeInputInvalid, MergeRefused, PatientMissing
from shared.services.merge_deps import MergeDeps
from shared.services.merge_preview import preview as preview_counts
from shared.services.merge_task import JOB_IDENTIFIER_SYSTEM, merge_task

log = get_logger(__name__)
REQUESTED_BY = "fhir-operation:Patient/$merge"


class OperationFailed(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class OperationResult:
    status: int
    body: dict


def outcome(severity: str, code: str, text: str) -> dict:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": text}]}


def _parameters(body: Any) -> dict[str, list[dict]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise OperationFailed(400, "invalid", "the body must be a Parameters resource")
    named: dict[str, list[dict]] = {}
    for parameter in body.get("parameter") or []:
        if isinstance(parameter, dict) and isinstance(parameter.get("name"), str):
            named.setdefault(parameter["name"], []).append(parameter)
    for name in ("source-patient", "target-patient", "result-patient", "preview"):
        if len(named.get(name, [])) > 1:
            raise OperationFailed(400, "invalid", f"'{name}' given more than once")
    return named


def _reference(parameter: dict, name: str) -> str:
    reference = (parameter.get("valueReference") or {}).get("reference")
    pid = patient_id_of(reference or "")
    if not pid:
        raise OperationFailed(400, "invalid", f"'{name}' must be a valueReference to a Patient")
    return pid


def _by_identifiers(fhir: FhirPort, parameters: list[dict], name: str) -> str:
    found: set[str] = set()
    for parameter in parameters:
        identifier = parameter.get("valueIdentifier") or {}
        if not identifier.get("value"):
            raise OperationFailed(400, "invalid", f"'{name}' must be a valueIdentifier with a value")
        token = f"{identifier.get('system', '')}|{identifier['value']}" if identifier.get("system") \
            else identifier["value"]
        matches = {p["id"] for p in fhir.search("Patient", [("identifier", token)])
                   if p.get("resourceType") == "Patient"}
        found = matches if not found else found & matches
        if not found:
            break
    if not found:
        raise OperationFailed(422, "not-found", f"no Patient has every identifier of '{name}'")
    if len(found) > 1:
        raise OperationFailed(422, "multiple-matches", f"'{name}' matches {len(found)} patients")
    return found.pop()


def _resolve(fhir: FhirPort, named: dict[str, list[dict]], side: str) -> str:
    by_reference = named.get(f"{side}-patient")
    by_identifier = named.get(f"{side}-patient-identifier")
    if not by_reference and not by_identifier:
        raise OperationFailed(400, "required", f"'{side}-patient' or '{side}-patient-identifier' is required")
    pid = _reference(by_reference[0], f"{side}-patient") if by_reference else None
    if by_identifier:
        identified = _by_identifiers(fhir, by_identifier, f"{side}-patient-identifier")
        if pid and identified != pid:
            raise OperationFailed(422, "conflict", f"'{side}-patient' and '{side}-patient-identifier' "
                                  "name different patients")
        pid = identified
    return pid


class PatientMergeOperation:
    def __init__(self, settings: Settings, fhir: FhirPort, merges: ExplicitMerges, merge_deps: MergeDeps,
                 jobs: MergeJobsRepository, sleep=time.sleep):
        self._settings = settings
        self._fhir = fhir
        self._merges = merges
        self._merge_deps = merge_deps
        self._jobs = jobs
        self._sleep = sleep

    def run(self, body: Any, *, prefer_async: bool = False) -> OperationResult:
        try:
            return self._run(body, prefer_async)
        except OperationFailed as failed:
            log.info("patient_merge_refused", status=failed.status, code=failed.code)
            return OperationResult(failed.status, outcome("error", failed.code, failed.message))

    def _run(self, body: Any, prefer_async: bool) -> OperationResult:
        named = _parameters(body)
        preview_value = named.get("preview", [{}])[0].get("valueBoolean", False)
        if not isinstance(preview_value, bool):
            raise OperationFailed(400, "invalid", "'preview' must be a valueBoolean")
        source = _resolve(self._fhir, named, "source")
        target = _resolve(self._fhir, named, "target")
        result_patient = named.get("result-patient", [{}])[0].get("resource")
        if result_patient is not None and (result_patient.get("resourceType") != "Patient"
                                           or result_patient.get("id") != target):
            raise OperationFailed(400, "invalid", "'result-patient' must be the target Patient (same id)")
        try:
            _, patients = self._merges.check(target, [source])
        except MergeInputInvalid as error:
            raise OperationFailed(422, "business-rule", str(error)) from None
        except PatientMissing as error:
            raise OperationFailed(422, "not-found", str(error)) from None
        except MergeRefused as error:
            raise OperationFailed(422, "business-rule", str(error)) from None
        settings = self._settings
        if preview_value:
            counts = preview_counts(target, [source], self._merge_deps)
            result = result_patient or fill_master(patients[target], [patients[source]],
                                                   golden_tag_system=settings.golden_tag_system,
                                                   nik_system=settings.nik_system)[0]
            detail = ", ".join(f"{t} {n}" for t, n in sorted(counts.items())) or "none"
            return OperationResult(200, self._output(body, outcome(
                "information", "informational",
                f"preview only: {sum(counts.values())} resource(s) would be rewritten ({detail})"), result))
        if result_patient is not None:
            self._apply_result_patient(patients[target], result_patient)
        task_id = f"merge-{uuid.uuid4().hex[:24]}"
        try:
            merged = self._merges.merge(target, [source], reason="Patient/$merge", requested_by=REQUESTED_BY,
                                        evidence={"fhir_task": f"Task/{task_id}"})
        except (MergeRefused, MergeInputInvalid) as error:
            raise OperationFailed(422, "business-rule", str(error)) from None
        task = self._fhir.update(merge_task(task_id, source, target, merged.request_id))
        log.info("patient_merge_accepted", job_id=merged.request_id, task_id=task_id)
        if not prefer_async and self._wait_done(merged.request_id):
            return OperationResult(200, self._output(body, outcome(
                "information", "informational", f"merge completed (job {merged.request_id})"),
                self._fhir.read("Patient", target)))
        return OperationResult(202, self._output(body, outcome(
            "information", "informational", f"merge accepted, running as job {merged.request_id}; "
            f"follow Task/{task_id}"), self._fhir.read("Patient", target), self._fhir.read("Task", task["id"])))

    def _apply_result_patient(self, current: dict, wanted: dict) -> None:
        """The client's target as it should be: written before the merge (links and activity stay the
        merge's to set), with ifMatch on the version read."""
        update = copy.deepcopy(wanted)
        for key in ("link", "active", "meta"):
            update.pop(key, None)
            if key in current and key != "meta":
                update[key] = current[key]
        self._fhir.update(update, if_match=(current.get("meta") or {}).get("versionId"))

    def _wait_done(self, job_id: str) -> bool:
        deadline = time.monotonic() + self._settings.patient_merge_wait_seconds
        while time.monotonic() < deadline:
            job = self._jobs.get(job_id, fields=["status"])
            if job and job.get("status") == "done":
                return True
            self._sleep(0.5)
        return False

    @staticmethod
    def _output(body: dict, result_outcome: dict, result: dict, task: dict | None = None) -> dict:
        parameters = [{"name": "input", "resource": body}, {"name": "outcome", "resource": result_outcome},
                      {"name": "result", "resource": result}]
        if task is not None:
            parameters.append({"name": "task", "resource": task})
        return {"resourceType": "Parameters", "parameter": parameters}


__all__ = ["JOB_IDENTIFIER_SYSTEM", "OperationResult", "PatientMergeOperation"]
