"""Who may call the subscription relay: a Google-signed ID token for the relay's URL from a listed
service account, or the shared secret; everything else gets 401 with a reason code and nothing is
published. Tokens are signed here with a local RSA key, and google-auth fetches the matching
certificate from a fake certs endpoint, so the real verification code runs without network."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt
from google.auth import jwt as google_jwt

from shared import bootstrap
from shared.adapters.caller_auth import EitherVerifier, GoogleIdTokenVerifier, SharedSecretVerifier
from shared.config import ConfigurationError, Settings
from shared.ports.callers import Caller, CallerRejected, CallerVerifier
from shared.services.relay import relay_notification
from tests.fakes import RecordingPublisher

AUDIENCE = "https://asia-southeast2-dedup-kabupaten-sleman.cloudfunctions.net/subscription-relay"
HAPI = "hapi-fhir@dedup-kabupaten-sleman.iam.gserviceaccount.com"
SECRET = "s3cret-from-secret-manager-0123456789"
PATIENT = json.dumps({"resourceType": "Patient", "id": "p1"}).encode()
SETTINGS = Settings()


def _key_and_cert(common_name: str):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem_key, cert.public_bytes(serialization.Encoding.PEM)


GOOGLE_KEY, GOOGLE_CERT = _key_and_cert("google")
FORGER_KEY, _ = _key_and_cert("forger")


@dataclass
class _Response:
    status: int
    data: bytes


class FakeCertsEndpoint:
    """A google-auth transport serving Google's certs format ({kid: PEM certificate})."""

    def __init__(self):
        self.fetches = 0

    def __call__(self, url, method="GET", **kwargs):
        assert "googleapis.com" in url and method == "GET"
        self.fetches += 1
        return _Response(200, json.dumps({"google-kid": GOOGLE_CERT.decode()}).encode())


def id_token(*, email=HAPI, audience=AUDIENCE, expires_in=3600, key=GOOGLE_KEY, issuer="https://accounts.google.com",
             email_verified=True) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": "1234", "email": email, "email_verified": email_verified,
              "iat": now - 60 if expires_in > 0 else now - 7200, "exp": now + expires_in}
    signer = crypt.RSASigner.from_string(key, key_id="google-kid")
    return google_jwt.encode(signer, claims).decode()


@pytest.fixture
def certs():
    return FakeCertsEndpoint()


@pytest.fixture
def oidc(certs):
    return GoogleIdTokenVerifier(AUDIENCE, [HAPI], request=certs)


def relay(verifier: CallerVerifier, authorization: str | None):
    publisher = RecordingPublisher()
    result = relay_notification(method="PUT", path="/Patient/p1", authorization=authorization, body=PATIENT,
                                settings=SETTINGS, publisher=publisher, verifier=verifier)
    return result, publisher


def test_valid_token_from_an_allowed_caller_is_relayed(oidc, certs):
    result, publisher = relay(oidc, f"Bearer {id_token()}")
    assert (result.status, result.reason) == (202, "published")
    assert publisher.published == [("patient-changes", PATIENT)]
    # A second call reuses Google's certificates instead of fetching them per request.
    relay(oidc, f"Bearer {id_token()}")
    assert certs.fetches == 1


@pytest.mark.parametrize(("authorization", "reason"), [
    (lambda: None, "missing-header"),
    (lambda: "", "missing-header"),
    (lambda: f"Basic {id_token()}", "not-bearer"),
    (lambda: f"Bearer {id_token(audience='https://elsewhere.example/relay')}", "wrong-audience"),
    (lambda: f"Bearer {id_token(email='intruder@other-project.iam.gserviceaccount.com')}", "unknown-caller"),
    (lambda: f"Bearer {id_token(email_verified=False)}", "unknown-caller"),
    (lambda: f"Bearer {id_token(expires_in=-600)}", "expired-token"),
    (lambda: f"Bearer {id_token(key=FORGER_KEY)}", "bad-token"),
    (lambda: f"Bearer {id_token(issuer='https://evil.example')}", "bad-token"),
    (lambda: "Bearer not.a.jwt", "bad-token"),
    (lambda: f"Bearer {SECRET}", "bad-token"),  # OIDC only: a secret is no token
])
def test_every_other_token_gets_401_and_nothing_is_published(oidc, authorization, reason):
    with structlog.testing.capture_logs() as logs:
        result, publisher = relay(oidc, authorization())
    assert (result.status, result.reason) == (401, reason)
    assert publisher.published == []
    # The log-based metric (infra/modules/monitoring) counts this event by its reason label.
    assert [(e["event"], e["reason"], e["log_level"]) for e in logs] == [("relay_rejected", reason, "warning")]


@pytest.mark.parametrize(("authorization", "status", "reason"), [
    (f"Bearer {SECRET}", 202, "published"),
    (f"Bearer {SECRET}x", 401, "bad-secret"),
    (f"Bearer {SECRET[:-1]}", 401, "bad-secret"),
    ("Bearer local-relay-token", 401, "bad-secret"),  # the old built-in token opens nothing
    (None, 401, "missing-header"),
    (SECRET, 401, "not-bearer"),
])
def test_shared_secret(authorization, status, reason):
    result, publisher = relay(SharedSecretVerifier(SECRET), authorization)
    assert (result.status, result.reason) == (status, reason)
    assert len(publisher.published) == (1 if status == 202 else 0)


def test_both_modes_together_accept_either_and_name_the_refusing_check(oidc):
    either = EitherVerifier(oidc, SharedSecretVerifier(SECRET))
    assert relay(either, f"Bearer {id_token()}")[0].status == 202
    assert relay(either, f"Bearer {SECRET}")[0].status == 202
    assert relay(either, f"Bearer {id_token(email='x@y.iam.gserviceaccount.com')}")[0].reason == "unknown-caller"
    assert relay(either, "Bearer wrong")[0].reason == "bad-secret"


class _FakeVerifier(CallerVerifier):
    def __init__(self, outcome: Caller | CallerRejected):
        self.outcome, self.seen = outcome, []

    def verify(self, authorization):
        self.seen.append(authorization)
        if isinstance(self.outcome, CallerRejected):
            raise self.outcome
        return self.outcome


def test_the_use_case_answers_what_the_port_decides():
    accepting = _FakeVerifier(Caller("svc@p.iam.gserviceaccount.com", "oidc"))
    assert relay(accepting, "Bearer whatever")[0].status == 202
    assert accepting.seen == ["Bearer whatever"]
    refusing = _FakeVerifier(CallerRejected("unknown-caller"))
    result, publisher = relay(refusing, "Bearer whatever")
    assert (result.status, result.reason, publisher.published) == (401, "unknown-caller", [])


# --- configuration: no built-in credential ------------------------------------------------------------

def test_no_caller_check_configured_fails_loudly():
    assert not hasattr(Settings(), "relay_token")
    with pytest.raises(ConfigurationError, match="no caller check"):
        bootstrap.caller_verifier(Settings(project_id="relay-unconfigured"))


def test_bootstrap_builds_the_configured_checks():
    token_only = Settings(project_id="r1", relay_audience=AUDIENCE, relay_allowed_callers=[HAPI])
    assert isinstance(bootstrap.caller_verifier(token_only), GoogleIdTokenVerifier)
    secret_only = Settings(project_id="r2", relay_shared_secret=SECRET)
    assert isinstance(bootstrap.caller_verifier(secret_only), SharedSecretVerifier)
    both = Settings(project_id="r3", relay_audience=AUDIENCE, relay_allowed_callers=[HAPI], relay_shared_secret=SECRET)
    assert isinstance(bootstrap.caller_verifier(both), EitherVerifier)


def test_allowed_callers_come_from_the_environment_as_terraform_writes_them(monkeypatch):
    monkeypatch.setenv("DEDUP_RELAY_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("DEDUP_RELAY_ALLOWED_CALLERS", json.dumps([HAPI, "other@p.iam.gserviceaccount.com"]))
    assert Settings().relay_allowed_callers == [HAPI, "other@p.iam.gserviceaccount.com"]


@pytest.mark.parametrize("partial", [{"relay_audience": AUDIENCE}, {"relay_allowed_callers": [HAPI]}])
def test_half_an_oidc_configuration_is_refused(partial):
    with pytest.raises(ValueError, match="go together"):
        Settings(**partial)


def test_rejections_do_not_log_the_credential(oidc, caplog):
    caplog.set_level(logging.DEBUG)
    token = id_token(email="intruder@other.iam.gserviceaccount.com")
    with structlog.testing.capture_logs() as logs:
        relay(oidc, f"Bearer {token}")
        relay(SharedSecretVerifier(SECRET), f"Bearer {SECRET}-wrong")
    output = json.dumps(logs) + caplog.text
    assert token not in output and SECRET not in output and "intruder" not in output
