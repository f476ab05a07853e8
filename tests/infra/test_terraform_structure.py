"""Structural rules of infra/, asserted on the parsed HCL (no provider can be downloaded here)."""

from __future__ import annotations

import json
import re

import pytest

from shared.config import Settings
from tests.infra.conftest import ENVS_DIR, INFRA_DIR, REPO_ROOT

BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}

# What each function may touch: its FHIR role, the topics it publishes to (from shared/services:
# fan-out finalises a job with no work, the finaliser publishes the NIK's follow-up merge request).
EXPECTED_ACCESS = {
    "match-patient": ("${local.reader}", ["merge_requests"], True),
    "force-merge": ("${local.reader}", ["merge_requests"], True),
    "merge-fanout": ("${local.reader}", ["merge_tasks", "merge_finalise"], True),
    "merge-worker": ("${local.editor}", ["merge_finalise"], True),
    "merge-finaliser": ("${local.editor}", ["merge_requests"], True),
    "subscription-relay": (None, ["patient_changes", "resource_changes"], False),
    "late-references": ("${local.editor}", [], True),
    "patient-merge": ("${local.editor}", ["merge_requests"], True),
    "reconcile": ("${local.editor}", [], True),
    # republishes requests, tasks, finalises; rolls a failed job back (FHIR writes)
    "sweeper": ("${local.editor}", ["merge_requests", "merge_tasks", "merge_finalise"], True),
}


def _design_functions() -> dict[str, tuple[str, str]]:
    """function name -> (trigger topic or 'HTTP', entry point callable) from docs/DESIGN.md."""
    text = (REPO_ROOT / "docs" / "DESIGN.md").read_text()
    rows = re.findall(r"^\| `([a-z-]+)` \| (.+?) \| `functions\.main\.(\w+)` \|$", text, flags=re.MULTILINE)
    return {name: (trigger.strip("` "), entry) for name, trigger, entry in rows}


def block(body: dict, name: str) -> dict:
    """The single nested block ``name`` of a resource body (python-hcl2 gives blocks as lists)."""
    value = body[name]
    if isinstance(value, list):
        assert len(value) == 1, f"expected one {name} block"
        return value[0]
    return value


def _all_tf_texts() -> dict[str, str]:
    return {str(p.relative_to(INFRA_DIR)): p.read_text() for p in INFRA_DIR.rglob("*.tf")}


def _walk(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _iam_bindings(modules, envs):
    for directory in [*modules.values(), *envs.values()]:
        for type_, resources in directory.resources.items():
            if type_.endswith(("_iam_member", "_iam_binding")):
                for name, body in resources.items():
                    yield f"{directory.path.name}/{type_}.{name}", body


def test_every_subscription_has_retry_and_dead_letter_policy(modules):
    subscriptions = {
        (module_name, name): body
        for module_name, module in modules.items()
        for name, body in module.resources_of("google_pubsub_subscription").items()
    }
    assert subscriptions, "no subscriptions found"
    for (module_name, name), body in subscriptions.items():
        assert body.get("message_retention_duration"), f"{module_name}.{name}: no message retention"
        assert block(body, "expiration_policy")["ttl"] == "", f"{module_name}.{name}: would expire when idle"
        if "dead_letter" in str(body["topic"]) or "quarantine" in str(body["topic"]):
            # The subscription that holds a dead-letter topic's messages: nothing nacks it.
            assert body.get("retain_acked_messages") is True
            continue
        assert "dead_letter_policy" in body, f"{module_name}.{name}: no dead-letter policy"
        dead_letter = block(body, "dead_letter_policy")
        assert "dead_letter" in dead_letter["dead_letter_topic"]
        assert dead_letter["max_delivery_attempts"]
        retry = block(body, "retry_policy")
        assert retry["minimum_backoff"] and retry["maximum_backoff"], f"{module_name}.{name}: no retry policy"
        oidc = block(block(body, "push_config"), "oidc_token")
        assert oidc["service_account_email"], "push without an authenticated identity"


def test_dead_letter_topic_is_writable_by_pubsub_service_agent(modules):
    function = modules["pubsub_function"]
    publisher = function.resources_of("google_pubsub_topic_iam_member")["dead_letter_publisher"]
    assert "gcp-sa-pubsub" in publisher["member"]
    assert publisher["role"] == "roles/pubsub.publisher"
    subscriber = function.resources_of("google_pubsub_subscription_iam_member")["dead_letter_subscriber"]
    assert "gcp-sa-pubsub" in subscriber["member"]


def test_every_function_runs_as_its_own_service_account(modules):
    function = modules["pubsub_function"]
    functions = function.resources_of("google_cloudfunctions2_function")
    assert list(functions) == ["this"], "one function per module instance"
    service_config = block(functions["this"], "service_config")
    assert service_config["service_account_email"] == "${google_service_account.runtime.email}"
    runtime = function.resources_of("google_service_account")["runtime"]
    assert "var.name" in runtime["account_id"] or "local.account_id" in runtime["account_id"]
    assert "var.name" in function.locals["account_id"]
    # The district instantiates the module once per function (for_each), so accounts never repeat.
    district = modules["district"]
    assert district.modules["function"]["for_each"] == "${local.functions}"
    assert district.modules["function"]["name"] == "${each.key}"


def test_service_account_ids_fit_the_30_character_limit():
    for name in _design_functions():
        assert len(f"dedup-{name}") <= 30
        assert len(f"dedup-{name}-push") <= 30


def _function_list() -> dict[str, dict]:
    """function name -> its entry of functions/functions.json, the one list of deployed functions."""
    listed = json.loads((REPO_ROOT / "functions" / "functions.json").read_text())["functions"]
    return {entry["name"]: entry for entry in listed}


def test_functions_match_the_design(modules):
    defaults = modules["district"].locals["function_defaults"]
    listed = _function_list()
    design = _design_functions()
    assert set(defaults) == set(listed) == set(design) == set(EXPECTED_ACCESS)
    topic_names = modules["district"].locals["topics"]
    for name, (trigger, entry_point) in design.items():
        spec = listed[name]
        assert spec["entry_point"] == entry_point
        if trigger.startswith("HTTP"):
            assert spec["trigger"] == "http"
        else:
            assert spec["trigger"] == trigger
            assert trigger in topic_names.values()


def test_district_takes_entry_points_and_triggers_from_the_function_list(modules):
    district = modules["district"]
    reads = re.fullmatch(r'\$\{jsondecode\(file\("\$\{path\.module\}/([^"]+)"\)\)\.functions\}',
                         district.locals["function_list"])
    assert reads, district.locals["function_list"]
    assert (district.path / reads.group(1)).resolve() == REPO_ROOT / "functions" / "functions.json"
    assert district.locals["topic_keys"] == "${{for key, name in local.topics : name => key}}"
    # Entry point and trigger come from the list only: the per-function settings cannot shadow them.
    for name, spec in district.locals["function_defaults"].items():
        assert not {"entry_point", "trigger"} & set(spec), name
    assert district.locals["functions"].startswith(
        "${{for f in local.function_list : f.name => merge(local.function_defaults[f.name], "
        '{entry_point = f.entry_point, trigger = f.trigger == "http" ? null : local.topic_keys[f.trigger]}, '
        "try(var.function_limits[f.name], {}))"), district.locals["functions"]


@pytest.mark.parametrize("function_name", sorted(EXPECTED_ACCESS))
def test_each_function_holds_only_what_it_needs(modules, function_name):
    spec = modules["district"].locals["function_defaults"][function_name]
    fhir_role, publishes, uses_firestore = EXPECTED_ACCESS[function_name]
    assert spec["fhir_role"] == fhir_role
    assert spec["publish"] == publishes
    assert spec["firestore"] is uses_firestore
    assert spec["nik_key"] is uses_firestore  # every function that indexes patients hashes NIKs
    assert spec["max_instances"] >= 1 and spec["concurrency"] >= 1
    assert spec["timeout"] <= 540  # leaves room under Pub/Sub's 600 s push deadline


def test_fhir_roles_are_granted_on_the_store_only(modules):
    district = modules["district"]
    assert district.locals["reader"] == '${local.uses_healthcare_api ? "roles/healthcare.fhirResourceReader" : null}'
    assert district.locals["editor"] == '${local.uses_healthcare_api ? "roles/healthcare.fhirResourceEditor" : null}'
    function = modules["pubsub_function"]
    assert "google_healthcare_fhir_store_iam_member" in function.resources
    roles = [body["role"] for _, body in _iam_bindings(modules, {})]
    assert not any("healthcare" in role for role in roles if role.startswith("roles/")), (
        "healthcare roles are only granted through the store-level binding"
    )
    firestore = function.resources_of("google_project_iam_member")["firestore"]
    assert firestore["role"] == "roles/datastore.user"
    assert "databases/" in block(firestore, "condition")["expression"]


# The one public invoker: an HTTP function that verifies every caller itself (the relay), because Cloud
# Run strips the signature of an ID token it checked. Internal ingress still applies.
CALLER_CHECKING_INVOKER = "pubsub_function/google_cloud_run_v2_service_iam_member.callers_checked_by_function"


def test_no_basic_or_admin_roles_and_no_public_members(modules, envs):
    bindings = list(_iam_bindings(modules, envs))
    assert bindings
    for where, body in bindings:
        role = body["role"]
        assert role not in BASIC_ROLES, f"{where}: {role}"
        assert not role.endswith((".admin", "Admin")), f"{where}: {role}"
        if where == CALLER_CHECKING_INVOKER:
            assert body["count"] == "${var.function_checks_callers ? 1 : 0}" and role == "roles/run.invoker"
            continue
        members = body["members"] if "members" in body else [body["member"]]  # _iam_binding: a list
        assert not PUBLIC_MEMBERS.intersection(members), f"{where}: public member"
    for path, text in _all_tf_texts().items():
        for role in BASIC_ROLES:
            assert f'"{role}"' not in text, f"{path} mentions {role}"
    # Only the HTTP functions that FHIR servers call (the relay, Patient/$merge) check their callers
    # themselves (shared/ports/callers.py); every other function keeps Cloud Run's invoker check.
    defaults = modules["district"].locals["function_defaults"]
    assert {name for name, spec in defaults.items() if spec["caller_check"]} == {"subscription-relay", "patient-merge"}
    assert modules["district"].modules["function"]["function_checks_callers"] == "${each.value.caller_check}"


def test_no_all_traffic_ingress(modules):
    for path, text in _all_tf_texts().items():
        assert "ALLOW_ALL" not in text, path
    function = modules["pubsub_function"].resources_of("google_cloudfunctions2_function")["this"]
    assert block(function, "service_config")["ingress_settings"] == "${var.ingress}"
    validation = block(modules["pubsub_function"].variables["ingress"], "validation")["condition"]
    assert "ALLOW_INTERNAL_ONLY" in validation and "ALLOW_INTERNAL_AND_GCLB" in validation
    assert modules["pubsub_function"].variables["ingress"]["default"] == "ALLOW_INTERNAL_ONLY"


def test_function_settings_are_real_settings_fields(modules):
    settings = modules["district"].locals["settings"]
    # merge({...}, var.extra_settings): take the literal keys out of the expression.
    keys = set(re.findall(r"\b(DEDUP_[A-Z_]+)\s*=", settings))
    for local in ("nik_key_env", "fhir_token_env", "relay_secret_env", "relay_settings", "threshold_settings"):
        keys |= set(re.findall(r"DEDUP_[A-Z_]+", str(modules["district"].locals[local])))
    assert "DEDUP_NIK_HASH_KEY" in keys and "DEDUP_FHIR_BASE_URL" in keys
    fields = {f"DEDUP_{name.upper()}" for name in Settings.model_fields}
    assert keys <= fields, f"not in shared/config.py: {sorted(keys - fields)}"


def test_nik_key_comes_from_secret_manager_only(modules):
    settings = modules["district"].locals["settings"]
    assert "DEDUP_NIK_HASH_KEY" not in settings, "the NIK key must not be a plain env var"
    assert "DEDUP_NIK_HASH_KEY" in modules["district"].locals["nik_key_env"]
    function = modules["pubsub_function"].resources_of("google_cloudfunctions2_function")["this"]
    assert "secret_environment_variables" in str(function["service_config"])
    assert "google_secret_manager_secret_version" not in modules["district"].resources, (
        "the key's value must never be in Terraform state"
    )


def test_required_apis_are_enabled(modules):
    services = modules["district"].resources_of("google_project_service")["enabled"]["for_each"]
    for api in ("healthcare", "pubsub", "cloudfunctions", "run", "cloudbuild", "artifactregistry",
                "firestore", "secretmanager", "monitoring", "iam"):
        assert f"{api}.googleapis.com" in services


def test_alerting_covers_dead_letters_and_errors(modules):
    policies = modules["monitoring"].resources_of("google_monitoring_alert_policy")
    assert "num_undelivered_messages" in str(policies["dead_letters"])
    assert "5xx" in str(policies["function_errors"])


def test_stuck_work_is_swept_on_a_schedule_with_the_settings_age_and_alerted(modules):
    district = modules["district"]
    settings = district.locals["settings"]
    assert "DEDUP_STUCK_AFTER_SECONDS" in settings and "var.stuck_after_seconds" in settings
    assert "DEDUP_STUCK_REPUBLISH_LIMIT" in settings and "var.stuck_republish_limit" in settings
    assert district.variables["stuck_after_seconds"]["default"] == Settings.model_fields["stuck_after_seconds"].default
    assert district.variables["stuck_republish_limit"]["default"] == \
        Settings.model_fields["stuck_republish_limit"].default
    job = district.resources_of("google_cloud_scheduler_job")["sweep"]
    assert "ops_sweep" in block(job, "pubsub_target")["topic_name"]
    assert district.locals["topics"]["ops_sweep"] == Settings.model_fields["topic_ops_sweep"].default
    metric = modules["monitoring"].resources_of("google_logging_metric")["merge_failed"]
    # the events shared/services/merge_failure.py and sweeper.py log
    assert "merge_job_failed" in metric["filter"] and "merge_request_released" in metric["filter"]
    policy = modules["monitoring"].resources_of("google_monitoring_alert_policy")["merge_failed"]
    assert "google_logging_metric.merge_failed.name" in str(policy)


def test_every_district_env_uses_the_modules(envs):
    assert len(envs) >= 2
    prefixes = set()
    modes = set()
    for name, env in envs.items():
        assert set(env.modules) == {"district"}, f"{name}: one district module call"
        call = env.modules["district"]
        assert call["source"] == "../../modules/district"
        assert call["district"] == name
        modes.add(call.get("fhir_mode", "create"))
        assert not env.resources, f"{name}: resources belong in the modules"
        backends = [b for block in env.terraform for b in block.get("backend", [])]
        assert backends and "gcs" in backends[0], f"{name}: remote state in GCS"
        backend_config = (ENVS_DIR / name / "backend.hcl").read_text()
        prefix = re.search(r'prefix\s*=\s*"([^"]+)"', backend_config).group(1)
        assert prefix.endswith(name)
        prefixes.add(prefix)
    assert len(prefixes) == len(envs), "every district has its own state"
    assert {"create", "external"} <= modes, "examples cover a new store and an external FHIR server"
