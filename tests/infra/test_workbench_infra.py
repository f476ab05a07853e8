"""The review workbench's Terraform held together with its code: the settings the app reads
(``DEDUP_WORKBENCH_*``), IAP's audience form, IAP as the only way in, the users' roles, and the
Firestore indexes of the queries the adapters make."""

from __future__ import annotations

import json
import re

from shared.adapters.audit import AUDIT_INDEXES
from shared.adapters.firestore_index import REVIEW_QUEUE_INDEXES
from shared.adapters.merge_jobs import MERGE_JOB_INDEXES
from tests.infra.test_terraform_structure import block
from workbench.config import Role, WorkbenchConfig


def test_the_workbench_environment_names_are_real_settings(modules):
    environment = modules["workbench"].locals["environment"]
    names = set(re.findall(r"\b(DEDUP_WORKBENCH_[A-Z_]+)\s*=", environment))
    names |= set(re.findall(r"DEDUP_WORKBENCH_[A-Z_]+", str(modules["workbench"].locals["secrets"])))
    fields = {f"DEDUP_WORKBENCH_{name.upper()}" for name in WorkbenchConfig.model_fields}
    assert {"DEDUP_WORKBENCH_MODE", "DEDUP_WORKBENCH_IAP_AUDIENCE", "DEDUP_WORKBENCH_ROLES",
            "DEDUP_WORKBENCH_SECRET_KEY"} <= names <= fields
    assert 'DEDUP_WORKBENCH_MODE         = "production"' in environment or '"production"' in environment
    assert "jsonencode(var.roles)" in environment


def test_roles_in_terraform_are_the_roles_the_app_knows(modules):
    condition = block(modules["workbench"].variables["roles"], "validation")["condition"]
    assert set(re.findall(r'"(\w+)"', condition)) == {role.name.lower() for role in Role}
    # The JSON Terraform writes is what the app parses.
    config = WorkbenchConfig(roles=json.loads('{"a@dinkes.go.id": "reviewer"}'))
    assert config.role_of("A@dinkes.go.id") == Role.REVIEWER and config.role_of("b@x") is None


def test_iap_audience_has_the_cloud_run_form(modules):
    audience = modules["workbench"].locals["iap_audience"]
    assert audience == "/projects/${var.project_number}/locations/${var.region}/services/${var.name}"


def test_iap_is_the_only_way_in(modules):
    workbench = modules["workbench"]
    [service] = workbench.resources_of("google_cloud_run_v2_service").values()
    assert service["iap_enabled"] is True
    invokers = workbench.resources_of("google_cloud_run_v2_service_iam_member")
    assert [body["member"] for body in invokers.values()] == ["${local.iap_agent}"]
    assert workbench.locals["iap_agent"].endswith("@gcp-sa-iap.iam.gserviceaccount.com")
    assert "roles/run.invoker" == next(iter(invokers.values()))["role"]
    [users] = workbench.resources_of("google_iap_web_cloud_run_service_iam_member").values()
    assert users["for_each"] == "${var.roles}" and users["member"] == "user:${each.key}"
    assert service["template"][0]["service_account"] == "${google_service_account.workbench.email}"


def test_the_workbench_runs_with_least_privilege(modules):
    workbench = modules["workbench"]
    project_roles = workbench.resources_of("google_project_iam_member")["workbench"]["for_each"]
    assert set(re.findall(r'"(roles/[^"]+)"', project_roles)) == {"roles/datastore.user", "roles/logging.logWriter"}
    assert workbench.resources_of("google_pubsub_topic_iam_member")["workbench"]["topic"] == \
        "${var.merge_requests_topic}"


def _declared_indexes(modules) -> set[tuple]:
    declared = modules["district"].locals["firestore_indexes"]
    return {(index["collection"], tuple(tuple(field) for field in index["fields"])) for index in declared.values()}


def test_every_composite_query_has_its_firestore_index(modules):
    in_code = {(collection, fields) for constants in (REVIEW_QUEUE_INDEXES, MERGE_JOB_INDEXES, AUDIT_INDEXES)
               for collection, indexes in constants.items() for fields in indexes}
    assert _declared_indexes(modules) == in_code
