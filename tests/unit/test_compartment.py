"""The resource types / params come from the R4 Patient CompartmentDefinition, filtered by the server."""

import json

import pytest

from shared.fhir.compartment import (
    AUDIT_TYPES,
    DATA_FILE,
    patient_compartment,
    reference_search_plan,
    trim_compartment_definition,
)


def test_trim_keeps_only_types_with_params():
    # A fragment in the shape of R4 compartmentdefinition-patient.json
    definition = {
        "resourceType": "CompartmentDefinition", "code": "Patient", "version": "4.0.1",
        "resource": [{"code": "Account", "param": ["subject"]}, {"code": "Binary"},
                     {"code": "Observation", "param": ["subject", "performer"]}],
    }
    assert trim_compartment_definition(definition) == {"Account": ["subject"], "Observation": ["subject", "performer"]}
    with pytest.raises(ValueError):
        trim_compartment_definition({"resourceType": "CompartmentDefinition", "code": "Encounter"})


def test_committed_data_is_the_r4_patient_compartment():
    data = json.loads(DATA_FILE.read_text())
    assert data["version"] == "4.0.1"
    assert data["url"] == "http://hl7.org/fhir/CompartmentDefinition/patient"
    compartment = patient_compartment()
    assert len(compartment) == 66
    # spot checks against the published R4 table
    assert compartment["Observation"] == ("subject", "performer")
    assert compartment["AllergyIntolerance"] == ("patient", "recorder", "asserter")
    assert compartment["Coverage"] == ("policy-holder", "subscriber", "beneficiary", "payor")
    assert compartment["ResearchSubject"] == ("individual",)
    assert compartment["Patient"] == ("link",)
    assert "Task" not in compartment  # Task is never in the R4 Patient compartment


def _capability(resources):
    return {"resourceType": "CapabilityStatement", "rest": [{"mode": "server", "resource": [
        {"type": rtype, "interaction": [{"code": "search-type"}, {"code": "update"}, {"code": "read"}],
         "searchParam": [{"name": p, "type": "reference"} for p in params] + [{"name": "date", "type": "date"}]}
        for rtype, params in resources.items()]}]}


def test_plan_uses_only_what_the_server_declares():
    capability = _capability({
        "Observation": ["subject", "patient", "performer"],
        "Basic": ["subject", "author"],          # no 'patient' -> 'subject' stands in for it
        "Encounter": ["subject", "patient"],
        "Provenance": ["target", "patient"],     # audit record: never rewritten
        "Person": [],                            # declared, but no compartment param supported
    })
    plan, skipped = reference_search_plan(capability)
    assert plan == {"Observation": ["subject", "performer"], "Basic": ["subject", "author"], "Encounter": ["patient"]}
    assert skipped["Provenance"] == "audit-record"
    assert skipped["Person"] == "no-supported-param"
    assert skipped["Person.patient"] == "param-not-supported"
    assert skipped["Immunization"] == "type-not-supported"
    assert set(plan).isdisjoint(AUDIT_TYPES)


def test_a_non_reference_param_of_the_same_name_is_not_used():
    capability = {"rest": [{"mode": "server", "resource": [
        {"type": "Flag", "interaction": [{"code": "search-type"}, {"code": "update"}],
         "searchParam": [{"name": "patient", "type": "token"}]}]}]}
    plan, skipped = reference_search_plan(capability)
    assert "Flag" not in plan and skipped["Flag"] == "no-supported-param"
