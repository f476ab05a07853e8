"""Issue 12, items 3 and 10 in Terraform, held together with the code that relies on them:
- only the Healthcare service agent may publish to patient-changes where the functions believe its
  bodies (DEDUP_TRUST_HEALTHCARE_NOTIFICATIONS), and nowhere else are they believed;
- the quarantine topic, its subscription, every triggered function's right to publish there, and the
  log-based metric and alert counting the log line functions/_delivery.py writes."""

from __future__ import annotations

import re

from functions._delivery import QUARANTINED_EVENT
from shared.config import Settings
from tests.infra.test_terraform_structure import block

HEALTHCARE_AGENT = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-healthcare.iam.gserviceaccount.com"
PATIENT_CHANGES = '${google_pubsub_topic.pipeline["patient_changes"].name}'


def _publisher_grants_on_patient_changes(modules) -> list[tuple[str, dict]]:
    grants = []
    for module_name, module in modules.items():
        for type_, resources in module.resources.items():
            if type_.startswith("google_pubsub_topic_iam"):
                for name, body in resources.items():
                    if body.get("topic") == PATIENT_CHANGES or "patient_changes" in str(body.get("topic")):
                        grants.append((f"{module_name}/{type_}.{name}", body))
    return grants


def test_only_the_healthcare_service_agent_publishes_where_bodies_are_trusted(modules):
    district = modules["district"]
    [(where, grant)] = _publisher_grants_on_patient_changes(modules)
    # Authoritative: a binding replaces every other publisher of the topic (an _iam_member would add one).
    assert where == "district/google_pubsub_topic_iam_binding.healthcare_notifications"
    assert grant["role"] == "roles/pubsub.publisher" and grant["members"] == [HEALTHCARE_AGENT]
    assert grant["count"] == "${local.uses_healthcare_api ? 1 : 0}"
    assert not any(type_ == "google_pubsub_topic_iam_policy" for type_ in district.resources)

    # The functions believe bodies exactly where that binding exists...
    settings = district.locals["settings"]
    assert re.search(r"DEDUP_TRUST_HEALTHCARE_NOTIFICATIONS\s*=\s*tostring\(local\.uses_healthcare_api\)", settings)
    assert "trust_healthcare_notifications" in Settings.model_fields
    assert Settings().trust_healthcare_notifications is False  # the local stack's topic is the relay's
    assert district.locals["uses_healthcare_api"] == '${var.fhir_mode != "external"}'
    # ...and no function publishes there then: only the relay does, and only with an external server.
    publishers = [name for name, spec in district.locals["function_defaults"].items()
                  if "patient_changes" in spec["publish"]]
    assert publishers == ["subscription-relay"]
    assert 'f.name != "subscription-relay" || var.fhir_mode == "external"' in district.locals["functions"]


def test_the_quarantine_topic_is_the_settings_topic_and_kept_for_ops(modules):
    district = modules["district"]
    assert district.locals["topics"]["quarantine"] == Settings().topic_quarantine
    assert "DEDUP_TOPIC_QUARANTINE" in district.locals["settings"]
    hold = district.resources_of("google_pubsub_subscription")["quarantine"]
    assert hold["topic"] == '${google_pubsub_topic.pipeline["quarantine"].name}'
    # held like every topic with patient data: var.message_retention (days, not a week)
    assert hold["message_retention_duration"] == "${var.message_retention}" and hold["retain_acked_messages"] is True
    assert block(hold, "expiration_policy")["ttl"] == ""
    function = district.modules["function"]
    assert 'google_pubsub_topic.pipeline["quarantine"].name' in function["publish_topics"]
    assert "each.value.trigger == null ? []" in function["publish_topics"]  # every triggered function


def test_quarantined_messages_are_counted_from_the_functions_log_line_and_alert(modules):
    monitoring = modules["monitoring"]
    metric = monitoring.resources_of("google_logging_metric")["quarantined_messages"]
    assert f'jsonPayload.event = "{QUARANTINED_EVENT}"' in metric["filter"]
    policy = monitoring.resources_of("google_monitoring_alert_policy")["quarantined_messages"]
    condition = block(block(policy, "conditions"), "condition_threshold")
    assert "google_logging_metric.quarantined_messages.name" in condition["filter"]
    assert condition["threshold_value"] == 0 and condition["comparison"] == "COMPARISON_GT"
    call = modules["district"].modules["monitoring"]
    assert "quarantine" in call["quarantine_topic"] and "quarantine" in call["quarantine_subscription"]
