"""JWT client authentication (checklist §6): every rejection is a bare 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from typing import Any

import orjson
import pytest

from .conftest import Service
from .helpers import FhirData, Sample, hook_body, make_signer, prefetch_for

PV = "her2-therapy-review"


def _body(service: Service, samples: dict[str, Sample], fhir_data: FhirData) -> bytes:
    s = samples["mbc-second-line"]
    return orjson.dumps(
        hook_body(
            "patient-view", s.patient_id, prefetch=prefetch_for(fhir_data, service.templates, s.patient_id)
        )
    )


def _post(service: Service, body: bytes, token: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return service.client.post(service.url(PV), content=body, headers=headers)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def _valid_claims(service: Service) -> dict[str, object]:
    """Claims a trusted client would send; the attacks below differ only in how they are signed."""
    now = int(time.time())
    return {
        "iss": service.es384.iss,
        "aud": service.url(PV),
        "exp": now + 300,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }


def _unsigned(service: Service) -> str:
    claims = _valid_claims(service)
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': service.es384.kid})}.{_b64(claims)}."


def _hmac(service: Service) -> str:
    """HS256 signed with the issuer's public key as the secret: the classic key-confusion attack."""
    claims = _valid_claims(service)
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': service.es384.kid})}.{_b64(claims)}"
    secret = orjson.dumps(service.es384.key.as_dict(private=False))
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def test_es384_and_rs384_from_jwks_url_are_accepted(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    body = _body(service, samples, fhir_data)
    assert _post(service, body, service.es384.token(service.url(PV))).status_code == 200
    assert _post(service, body, service.rs384.token(service.url(PV))).status_code == 200
    # aud as an array, extra Epic claims (sub, nbf) accepted
    token = service.es384.token([service.url(PV)], sub="client-id", nbf=int(time.time()) - 300)
    assert _post(service, body, token).status_code == 200


BAD_TOKENS: dict[str, Any] = {
    "no Authorization header": None,
    "not a JWT": "abc",
    "unsigned (alg none)": _unsigned,
    "HMAC key confusion": _hmac,
    "expired": lambda s: s.es384.token(s.url(PV), exp=int(time.time()) - 120, iat=int(time.time()) - 420),
    "wrong aud": lambda s: s.es384.token(f"{s.base}/cds-services/other"),
    "aud of another host": lambda s: s.es384.token(s.url(PV).replace("127.0.0.1", "localhost")),
    "untrusted issuer": lambda s: s.es384.token(s.url(PV), iss="https://evil.example"),
    "issued in the future": lambda s: s.es384.token(s.url(PV), iat=int(time.time()) + 3600),
    "lifetime above an hour": lambda s: s.es384.token(s.url(PV), exp=int(time.time()) + 7200),
    "lifetime 301 s, above the 300 s maximum": lambda s: s.es384.token(
        s.url(PV), iat=int(time.time()), exp=int(time.time()) + 301
    ),
    "issued 400 s ago, still valid for 60 s": lambda s: s.es384.token(
        s.url(PV), iat=int(time.time()) - 400, exp=int(time.time()) + 60
    ),
    "aud with another path after the URL": lambda s: s.es384.token(s.url(PV) + "/x"),
    "aud with a dot segment": lambda s: s.es384.token(s.url(PV) + "/."),
    "no jti": lambda s: s.es384.token(s.url(PV), jti=None),
    "no exp": lambda s: s.es384.token(s.url(PV), exp=None),
    "no kid": lambda s: s.es384.token(s.url(PV), h_kid=None),
    "unknown kid": lambda s: s.es384.token(s.url(PV), h_kid="rotated-away"),
    "foreign jku, issuer with a JWKS URL": lambda s: s.rs384.token(
        s.url(PV), h_jku="https://evil.example/jwks.json"
    ),
    "typ not JWT": lambda s: s.es384.token(s.url(PV), h_typ="at+jwt"),
    "signed by another key with the same kid": lambda s: _impostor(s),
    "right key, other issuer's iss": lambda s: s.rs384.token(s.url(PV), iss=s.es384.iss),
}


def _impostor(service: Service) -> str:
    impostor = make_signer(service.es384.iss, "ES384")
    impostor.kid = service.es384.kid
    return impostor.token(service.url(PV), h_kid=service.es384.kid)


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_token_is_bare_401(
    case: str, service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    make = BAD_TOKENS[case]
    token = make(service) if callable(make) else make
    response = _post(service, _body(service, samples, fhir_data), token)
    assert response.status_code == 401
    assert response.content == b""
    assert response.headers["www-authenticate"] == "Bearer"


def test_replayed_jti_is_401(service: Service, samples: dict[str, Sample], fhir_data: FhirData) -> None:
    body = _body(service, samples, fhir_data)
    token = service.es384.token(service.url(PV))
    assert _post(service, body, token).status_code == 200
    replay = _post(service, body, token)
    assert replay.status_code == 401 and replay.content == b""


def test_jku_equal_to_configured_url_is_accepted(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    issuer = next(i for i in service.settings.issuers if i.iss == service.rs384.iss)
    token = service.rs384.token(service.url(PV), h_jku=issuer.jwks)
    assert _post(service, _body(service, samples, fhir_data), token).status_code == 200


def test_pinned_keys_verify_whatever_jku_names(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    """Keys pinned from a file: a jku the service cannot reach (the sandbox's) is not fetched and
    does not matter; the signature is checked against the pinned key with the token's kid."""
    issuer = next(i for i in service.settings.issuers if i.iss == service.es384.iss)
    assert not issuer.jwks_is_url
    token = service.es384.token(service.url(PV), h_jku="https://sandbox.invalid/.well-known/jwks.json")
    assert _post(service, _body(service, samples, fhir_data), token).status_code == 200
    forged = _impostor(service)  # same kid, another key
    assert _post(service, _body(service, samples, fhir_data), forged).status_code == 401


def test_401_before_body_validation(service: Service) -> None:
    """An unauthenticated caller learns nothing about the body rules."""
    response = _post(service, b"not json", None)
    assert response.status_code == 401


def test_discovery_is_open(service: Service) -> None:
    assert service.client.get(f"{service.base}/cds-services").status_code == 200


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(
    scheme: str, service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    """RFC 7235 section 2.1: the authentication scheme is case-insensitive."""
    token = service.es384.token(service.url(PV))
    response = service.client.post(
        service.url(PV),
        content=_body(service, samples, fhir_data),
        headers={"Authorization": f"{scheme} {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize("suffix", ["", "/", "//"])
def test_aud_equal_to_the_service_url_up_to_trailing_slashes_is_accepted(
    suffix: str, service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    body = _body(service, samples, fhir_data)
    assert _post(service, body, service.es384.token(service.url(PV) + suffix)).status_code == 200
    assert _post(service, body, service.es384.token([service.url(PV) + suffix])).status_code == 200


def test_lifetime_of_exactly_the_maximum_is_accepted(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    assert service.settings.max_token_lifetime_seconds == 300
    now = int(time.time())
    token = service.es384.token(service.url(PV), iat=now, exp=now + 300)
    assert _post(service, _body(service, samples, fhir_data), token).status_code == 200
