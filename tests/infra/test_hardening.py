"""What the code checks is wired the same way in infra/: the relay's caller check, the thresholds, the
deployed environment, encrypted Pub/Sub, audit logs, backups, pinned secrets and the provider lock."""

from __future__ import annotations

import re

from shared.config import CALIBRATED_THRESHOLD_FLOORS, Settings
from shared.services import relay
from tests.infra.conftest import ENVS_DIR, INFRA_DIR
from tests.infra.test_terraform_structure import block

THRESHOLD_VARIABLES = {name: f"DEDUP_{name.upper()}" for name in CALIBRATED_THRESHOLD_FLOORS}


def _env_names(expression: str) -> set[str]:
    return set(re.findall(r"DEDUP_[A-Z_]+", str(expression)))


# --- item 1: relay authentication --------------------------------------------------------------------

def test_relay_settings_in_infra_are_the_settings_fields(modules):
    district = modules["district"]
    relay_env = _env_names(district.locals["relay_settings"]) | _env_names(district.locals["relay_secret_env"])
    fields = {f"DEDUP_{name.upper()}" for name in Settings.model_fields if name.startswith("relay_")}
    assert relay_env == fields == {"DEDUP_RELAY_AUDIENCE", "DEDUP_RELAY_ALLOWED_CALLERS", "DEDUP_RELAY_SHARED_SECRET"}
    # The secret comes from Secret Manager, pinned; the callers as the JSON list pydantic reads.
    assert "DEDUP_RELAY_SHARED_SECRET" not in district.locals["settings"]
    assert "var.secret_versions.relay_shared_secret" in district.locals["relay_secret_env"]
    assert "jsonencode(var.relay_allowed_callers)" in district.locals["relay_settings"]
    # The audience is the relay's own URL: the function name, in the project and region.
    assert district.locals["relay_audience"] == (
        "https://${var.region}-${var.project_id}.cloudfunctions.net/subscription-relay")
    # Only the relay gets them.
    call = district.modules["function"]
    assert call["environment"] == "${merge(local.settings, each.value.caller_check ? local.relay_settings : tomap({}))}"
    assert "each.value.caller_check ? local.relay_secret_env" in call["secret_environment"]


def test_an_external_district_cannot_deploy_a_relay_without_a_caller_check(modules, envs):
    checks = block(modules["district"].resources_of("terraform_data")["input_checks"], "lifecycle")["precondition"]
    assert any("relay_allowed_callers" in c["condition"] and "relay_shared_secret" in c["condition"] for c in checks)
    for name, env in envs.items():
        call = env.modules["district"]
        assert "relay_invoker_members" not in call, name
        if call.get("fhir_mode") == "external":
            assert call.get("relay_allowed_callers") or call.get("relay_shared_secret"), name


def test_relay_rejections_are_counted_and_alerted(modules):
    monitoring = modules["monitoring"]
    metric = monitoring.resources_of("google_logging_metric")["relay_rejections"]
    assert 'jsonPayload.event = "relay_rejected"' in metric["filter"]
    assert metric["label_extractors"]["reason"] == "EXTRACT(jsonPayload.reason)"
    source = (INFRA_DIR.parent / "shared" / "services" / "relay.py").read_text()
    assert 'log.warning("relay_rejected", reason=' in source and relay.relay_notification
    alert = monitoring.resources_of("google_monitoring_alert_policy")["relay_rejections"]
    assert "logging.googleapis.com/user/${google_logging_metric.relay_rejections[0].name}" in str(alert)
    assert modules["district"].modules["monitoring"]["relay_service"] == (
        '${try(module.function["subscription-relay"].service_name, null)}')


# --- item 2: thresholds ------------------------------------------------------------------------------

def test_threshold_variables_default_to_the_code_and_pass_only_when_set(modules):
    district = modules["district"]
    for name, env_name in THRESHOLD_VARIABLES.items():
        # null = the code's calibrated value (Settings default): Terraform holds no second number.
        assert district.variables[name]["default"] is None, name
        assert f"{env_name} = var.{name}" in district.locals["threshold_settings"]
        assert env_name not in district.locals["settings"].split("local.threshold_settings")[0], env_name
    assert district.locals["threshold_settings"].endswith(": name => tostring(value) if value != null}}")
    assert "local.threshold_settings" in district.locals["settings"]
    assert district.variables["allow_thresholds_below_calibration"]["default"] is False
    assert Settings.model_fields["allow_thresholds_below_calibration"].default is False
    assert "DEDUP_ALLOW_THRESHOLDS_BELOW_CALIBRATION = tostring(var.allow_thresholds_below_calibration)" \
        in district.locals["settings"]
    for name, floor in CALIBRATED_THRESHOLD_FLOORS.items():
        assert Settings.model_fields[name].default == floor


def test_example_envs_do_not_lower_a_threshold(envs):
    for env_name, env in envs.items():
        call = env.modules["district"]
        assert not call.get("allow_thresholds_below_calibration"), env_name
        for name, floor in CALIBRATED_THRESHOLD_FLOORS.items():
            if name in call:
                assert call[name] >= floor, f"{env_name}: {name} = {call[name]} is under {floor}"


# --- item 12 (and the deployed environment) ------------------------------------------------------------

def test_functions_run_as_deployed(modules):
    assert 'DEDUP_ENVIRONMENT = "deployed"' in re.sub(r"\s+", " ", modules["district"].locals["settings"])
    assert Settings.model_fields["environment"].annotation is not None


def test_secrets_are_pinned_to_a_version(modules):
    for path in INFRA_DIR.rglob("*.tf"):
        assert '"latest"' not in path.read_text(), path
    function = modules["pubsub_function"]
    dynamic = function.resources_of("google_cloudfunctions2_function")["this"]["service_config"]
    assert "secret_environment_variables.value.version" in str(dynamic)
    validation = block(function.variables["secret_environment"], "validation")["condition"]
    assert "[1-9][0-9]*" in validation
    assert "var.secret_versions.nik_hash_key" in modules["district"].locals["nik_key_env"]


def test_the_key_and_the_index_cannot_be_destroyed_by_terraform(modules):
    district = modules["district"]
    for type_, name in [("google_secret_manager_secret", "nik_hash_key"), ("google_firestore_database", "dedup"),
                        ("google_kms_crypto_key", "pubsub")]:
        assert block(district.resources_of(type_)[name], "lifecycle")["prevent_destroy"] is True, name


def test_data_access_audit_logs_for_the_fhir_store_and_firestore(modules):
    audit = modules["district"].resources_of("google_project_iam_audit_config")["data_access"]
    for service in ("healthcare.googleapis.com", "datastore.googleapis.com"):
        assert service in audit["for_each"]
    assert {c["log_type"] for c in audit["audit_log_config"]} == {"DATA_READ", "DATA_WRITE"}


def test_firestore_is_backed_up_on_a_schedule(modules):
    schedules = modules["district"].resources_of("google_firestore_backup_schedule")
    assert {"daily", "weekly"} <= set(schedules)
    assert "daily_recurrence" in schedules["daily"] and "weekly_recurrence" in schedules["weekly"]
    for schedule in schedules.values():
        assert schedule["database"] == "${var.firestore_database}"


def _normalised(constraint: str) -> str:
    """A version constraint as ``terraform init`` writes it in a lock file (and insists on reading it):
    every version with three parts (">= 6.0" is ">= 6.0.0")."""
    def three_parts(match: re.Match) -> str:
        parts = match.group(0).split(".")
        return ".".join(parts + ["0"] * (3 - len(parts)))
    return re.sub(r"\d+(\.\d+)*", three_parts, constraint)


def test_every_env_commits_its_provider_lock(envs):
    for name, env in envs.items():
        lock = (ENVS_DIR / name / ".terraform.lock.hcl").read_text()
        constraint = env.terraform[0]["required_providers"][0]["google"]["version"]
        assert 'provider "registry.terraform.io/hashicorp/google"' in lock
        # Not normalised, init refuses the lock file ("must be written in normalized form").
        assert f'constraints = "{_normalised(constraint)}"' in lock
        version = tuple(int(x) for x in re.search(r'version\s+= "([\d.]+)"', lock).group(1).split("."))
        assert (6, 0) <= version[:2] < (8, 0)


# --- item 9: patient data in Pub/Sub -------------------------------------------------------------------

def test_every_topic_is_encrypted_with_the_districts_key(modules):
    district, function = modules["district"], modules["pubsub_function"]
    key = "${google_kms_crypto_key.pubsub.id}"
    assert district.resources_of("google_pubsub_topic")["pipeline"]["kms_key_name"] == key
    assert function.resources_of("google_pubsub_topic")["dead_letter"]["kms_key_name"] == "${var.kms_key_name}"
    assert district.modules["function"]["kms_key_name"] == key
    grant = district.resources_of("google_kms_crypto_key_iam_member")["pubsub_agent"]
    assert grant["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter" and "gcp-sa-pubsub" in grant["member"]
    assert "cloudkms.googleapis.com" in district.resources_of("google_project_service")["enabled"]["for_each"]
    assert int(district.resources_of("google_kms_crypto_key")["pubsub"]["rotation_period"].rstrip("s")) <= 90 * 86400


def test_messages_are_kept_days_not_a_week(modules):
    district, function = modules["district"], modules["pubsub_function"]
    retention = int(district.variables["message_retention"]["default"].rstrip("s"))
    assert retention <= 4 * 86400
    assert "default" not in function.variables["message_retention"]  # one value, the district's
    assert district.modules["function"]["message_retention"] == "${var.message_retention}"
    for module in (district, function):
        for kind in ("google_pubsub_topic", "google_pubsub_subscription"):
            for name, body in module.resources_of(kind).items():
                assert body["message_retention_duration"] == "${var.message_retention}", (kind, name)


def test_no_checkov_skip_claims_messages_hold_ids_only():
    for path in INFRA_DIR.rglob("*.tf"):
        assert "CKV_GCP_83" not in path.read_text(), path
