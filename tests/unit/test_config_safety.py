"""Settings refuse what would silently build a wrong index: thresholds under their calibrated floors
(unless an explicit, logged override is set) and the development NIK key outside the emulators."""

from __future__ import annotations

import pytest
import structlog
from pydantic import ValidationError

from shared.config import (
    CALIBRATED_THRESHOLD_FLOORS,
    DEVELOPMENT_NIK_HASH_KEY,
    Settings,
)


def test_the_defaults_are_the_calibrated_floors():
    defaults = Settings()
    assert {name: getattr(defaults, name) for name in CALIBRATED_THRESHOLD_FLOORS} == CALIBRATED_THRESHOLD_FLOORS
    assert CALIBRATED_THRESHOLD_FLOORS["name_match_threshold"] == 97.0  # README "Name matching"


@pytest.mark.parametrize("name", sorted(CALIBRATED_THRESHOLD_FLOORS))
def test_a_threshold_below_its_floor_is_refused(name):
    floor = CALIBRATED_THRESHOLD_FLOORS[name]
    with pytest.raises(ValidationError, match="below their calibrated floors"):
        Settings(**{name: floor - 0.5})
    assert getattr(Settings(**{name: floor}), name) == floor
    assert getattr(Settings(**{name: floor + 1}), name) == floor + 1


def test_the_kota_yogyakarta_value_is_refused_from_the_environment(monkeypatch):
    monkeypatch.setenv("DEDUP_NAME_MATCH_THRESHOLD", "85")  # what infra/envs/kota-yogyakarta used to set
    with pytest.raises(ValidationError, match="name_match_threshold"):
        Settings()


def test_an_explicit_override_is_accepted_and_logged_without_patient_data():
    with structlog.testing.capture_logs() as logs:
        settings = Settings(name_match_threshold=90, allow_thresholds_below_calibration=True)
    assert settings.name_match_threshold == 90
    assert logs == [{"event": "thresholds_below_calibration", "log_level": "warning",
                     "thresholds": {"name_match_threshold": 90.0}, "floors": CALIBRATED_THRESHOLD_FLOORS}]
    with structlog.testing.capture_logs() as quiet:
        Settings(allow_thresholds_below_calibration=True)
    assert quiet == []  # the override alone changes nothing and says nothing


@pytest.fixture
def outside_the_emulators(monkeypatch):
    monkeypatch.delenv("DEDUP_ENVIRONMENT", raising=False)
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("DEDUP_NIK_HASH_KEY", raising=False)
    return monkeypatch


def test_the_development_nik_key_is_refused_outside_the_emulators(outside_the_emulators):
    with pytest.raises(ValidationError, match="local development key"):
        Settings()  # e.g. `ops backfill` against a real project with no DEDUP_NIK_HASH_KEY
    with pytest.raises(ValidationError, match="local development key"):
        Settings(environment="deployed")
    outside_the_emulators.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8086")
    with pytest.raises(ValidationError, match="local development key"):
        Settings(environment="deployed")  # deployed says so explicitly, whatever else is set


def test_the_development_nik_key_is_allowed_on_the_emulators(outside_the_emulators):
    assert Settings(environment="local").nik_hash_key.get_secret_value() == DEVELOPMENT_NIK_HASH_KEY
    outside_the_emulators.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8086")
    assert Settings().is_local


def test_a_district_key_is_accepted_when_deployed(outside_the_emulators):
    outside_the_emulators.setenv("DEDUP_NIK_HASH_KEY", "a-district-key-from-secret-manager")
    settings = Settings(environment="deployed")
    assert not settings.is_local
