"""Trying to fool the single sign-on (``acgs.security.oidc``) of the evolution service's review
page, against a real OpenID Connect provider (``tests/services/oidc.py``) and the service under
uvicorn: forged and tampered session cookies, a callback with another state, a replayed code,
ID tokens signed by another key or for someone else, a name typed into the form, another
session's CSRF token, groups the mapping does not know, a session used on the JSON API, and a
sign-in that would send the browser to another site. Each attack has its control beside it
(the same request done right passes), so none of these tests can pass by refusing everything."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import itsdangerous
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from acgs.security.oidc import OidcSettings, OidcSignIn, parse_role_map
from acgs.security.settings import SecuritySettings
from acgs.services.evolution import EvolutionSettings, create_app
from tests.apps import evolution_events
from tests.services.oidc import CLIENT_ID, SignedInService, callback_url, evolution_with_sign_in, new_key, sign_in

COOKIE = "acgs_session"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedInService]:
    with evolution_with_sign_in(tmp_path_factory.mktemp("oidc")) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


@contextlib.contextmanager
def _signed_in(svc: SignedInService, login: str) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        answer = sign_in(c, svc.base_url, svc.provider.users[login])
        assert answer.status_code == 303 and answer.headers["location"] == "/evolution/review", answer.text
        yield c


def _csrf(c: httpx.Client, svc: SignedInService) -> str:
    page = c.get(f"{svc.base_url}/evolution/review")
    assert page.status_code == 200, page.text
    found = _CSRF.search(page.text)
    assert found is not None
    return found.group(1)


def _post_form(
    c: httpx.Client, svc: SignedInService, request_id: str, fields: dict[str, str], verdict: str = "approve"
) -> httpx.Response:
    return c.post(
        f"{svc.base_url}/evolution/review/{request_id}/{verdict}",
        content="&".join(f"{k}={v}" for k, v in fields.items()),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": svc.base_url},
        follow_redirects=False,
    )


def _decisions(svc: SignedInService, request_id: str) -> list[dict[str, Any]]:
    decided = ("evolution.approve", "evolution.approval_recorded", "evolution.reject")
    return [e for e in evolution_events(svc.data_dir) if e["metadata"]["request_id"] == request_id and e["action"] in decided]


def test_control_a_signed_in_reviewer_decides_with_the_session_csrf_token(svc: SignedInService) -> None:
    request_id = svc.submit()
    with _signed_in(svc, "rita") as rita:
        answer = _post_form(rita, svc, request_id, {"reason": "fine", "csrf": _csrf(rita, svc)}, "reject")
        assert answer.status_code == 303, answer.text
    assert svc.status_of(request_id) == "rejected"
    [event] = _decisions(svc, request_id)
    assert (event["metadata"]["actor_issuer"], event["metadata"]["actor_subject"]) == (svc.provider.issuer, "rita")


def _rewrite(value: str, change: Any) -> str:
    """The cookie with its JSON payload changed and its timestamp and signature kept."""
    payload, stamp, signature = value.rsplit(".", 2)
    data = json.loads(base64.b64decode(payload))
    change(data)
    return f"{base64.b64encode(json.dumps(data).encode()).decode()}.{stamp}.{signature}"


def test_a_tampered_session_cookie_is_refused(svc: SignedInService, client: httpx.Client) -> None:
    request_id = svc.submit()
    with _signed_in(svc, "audrey") as audrey:
        csrf = _csrf(audrey, svc)
        genuine = audrey.cookies[COOKIE]

    def promote(data: dict[str, Any]) -> None:
        data["acgs_oidc"]["groups"] = ["acgs-reviewers"]

    client.cookies.set(COOKIE, _rewrite(genuine, promote))
    page = client.get(f"{svc.base_url}/evolution/review", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/login")
    answer = _post_form(client, svc, request_id, {"reason": "promoted myself", "csrf": csrf})
    assert answer.status_code == 401 and answer.json()["errors"][0]["code"] == "sign_in_required"
    # Control: the cookie as it was opens the page (an auditor reads; deciding is another matter).
    client.cookies.set(COOKIE, genuine)
    assert client.get(f"{svc.base_url}/evolution/review").status_code == 200
    assert svc.status_of(request_id) == "pending"


def test_a_session_cookie_signed_with_another_key_is_refused(svc: SignedInService, client: httpx.Client) -> None:
    request_id = svc.submit()
    now = time.time()
    session = {
        "acgs_oidc": {
            "sub": "mallory",
            "iss": svc.provider.issuer,
            "groups": ["acgs-reviewers"],
            "name": "Mallory",
            "sid": "x",
            "csrf": "known",
            "at": now,
            "exp": now + 3600,
        }
    }
    forged = itsdangerous.TimestampSigner("a key the service does not have").sign(base64.b64encode(json.dumps(session).encode()))
    client.cookies.set(COOKIE, forged.decode())
    answer = _post_form(client, svc, request_id, {"reason": "forged", "csrf": "known"})
    assert answer.status_code == 401
    assert svc.status_of(request_id) == "pending"


def test_a_callback_with_another_state_is_refused(svc: SignedInService, client: httpx.Client) -> None:
    url, _ = callback_url(client, svc.base_url, svc.provider.users["rita"])
    forged = re.sub(r"state=[^&]+", f"state={secrets.token_urlsafe(16)}", url)
    assert forged != url
    answer = client.get(forged, follow_redirects=False)
    assert answer.status_code == 401 and "Sign-in failed" in answer.text
    assert client.get(f"{svc.base_url}/evolution/review", follow_redirects=False).status_code == 303


def test_a_replayed_code_is_refused(svc: SignedInService, client: httpx.Client) -> None:
    url, _ = callback_url(client, svc.base_url, svc.provider.users["rita"])
    first = client.get(url, follow_redirects=False)
    assert first.status_code == 303  # control: the first use signs in
    # The same browser again: the sign-in's state was used up.
    again = client.get(url, follow_redirects=False)
    assert again.status_code == 401 and "Sign-in failed" in again.text
    # Someone else who saw the URL: their session never started this sign-in.
    with httpx.Client(timeout=10) as other:
        stolen = other.get(url, follow_redirects=False)
        assert stolen.status_code == 401
        assert other.get(f"{svc.base_url}/evolution/review", follow_redirects=False).status_code == 303
    # And the provider itself refuses a code spent once, even with the client's credentials.
    code = re.search(r"code=([^&]+)", url)
    assert code is not None
    token = httpx.post(
        f"{svc.provider.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": code.group(1),
            "redirect_uri": url.split("?")[0],
            "code_verifier": "x" * 43,
        },
        auth=(CLIENT_ID, svc.provider.client_secret),
    )
    assert token.status_code == 400 and token.json()["error"] == "invalid_grant"


def _id_token(key: dict[str, Any], kid: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "mallory", "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": "n-1", "groups": ["acgs-reviewers"]}
    body.update(claims)
    return jwt.encode({"alg": "RS256", "kid": kid}, body, RSAKey.import_key(key))


def test_an_id_token_signed_by_another_key_is_refused(svc: SignedInService) -> None:
    """The checks the callback applies to an ID token (the service's own Authlib client, with
    the JWKS fetched from the provider), on tokens a token endpoint in the wrong hands could
    send."""
    sign_in_ = svc.app.state.oidc
    assert isinstance(sign_in_, OidcSignIn)
    real = svc.provider.keys[0]
    issuer = svc.provider.issuer

    async def check(token: str, nonce: str = "n-1") -> Any:
        return await sign_in_.client.parse_id_token({"id_token": token}, nonce=nonce, claims_options=sign_in_.claims_options)

    # Control: the provider's key, the right issuer, audience and nonce.
    claims = asyncio.run(check(_id_token(real, real["kid"], iss=issuer)))
    assert claims["sub"] == "mallory"
    attacks = {
        "another key under the provider's key id": _id_token(new_key(), real["kid"], iss=issuer),
        "another key under a key id of its own": _id_token(new_key(), "attacker-1", iss=issuer),
        "another issuer": _id_token(real, real["kid"], iss="http://127.0.0.1:1"),
        "another audience": _id_token(real, real["kid"], iss=issuer, aud="someone-else"),
        "another audience, this client as azp": _id_token(real, real["kid"], iss=issuer, aud="someone-else", azp=CLIENT_ID),
        "expired": _id_token(real, real["kid"], iss=issuer, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
    }
    for what, token in attacks.items():
        with pytest.raises(Exception) as refused:  # noqa: PT011 - joserfc raises a different class per check
            asyncio.run(check(token))
        assert refused.type.__module__.startswith("joserfc"), what
    with pytest.raises(Exception):  # noqa: PT011
        asyncio.run(check(_id_token(real, real["kid"], iss=issuer), nonce="another sign-in's nonce"))


def test_a_typed_reviewer_name_is_refused(svc: SignedInService, client: httpx.Client) -> None:
    request_id = svc.submit()
    with _signed_in(svc, "rita") as rita:
        fields = {"reviewer": "someone-else", "reason": "as someone else", "csrf": _csrf(rita, svc)}
        answer = _post_form(rita, svc, request_id, fields)
        assert answer.status_code == 422 and "typed into the form is not accepted" in answer.text
    # Without a session a typed name is no way in either.
    anonymous = _post_form(client, svc, request_id, {"reviewer": "rita", "reason": "trust me"})
    assert anonymous.status_code == 401
    assert svc.status_of(request_id) == "pending" and not _decisions(svc, request_id)


def test_a_form_without_the_session_csrf_token_is_refused(svc: SignedInService) -> None:
    request_id = svc.submit()
    with _signed_in(svc, "rita") as rita, _signed_in(svc, "rory") as rory:
        missing = _post_form(rita, svc, request_id, {"reason": "no token"})
        wrong = _post_form(rita, svc, request_id, {"reason": "rory's token", "csrf": _csrf(rory, svc)})
        assert missing.status_code == 403 and wrong.status_code == 403
        assert "csrf" in wrong.text.lower()
        # A page of another site cannot make the browser post at all (site guard).
        cross = rita.post(
            f"{svc.base_url}/evolution/review/{request_id}/approve",
            content=f"reason=x&csrf={_csrf(rita, svc)}",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"},
        )
        assert cross.status_code == 403
    assert svc.status_of(request_id) == "pending" and not _decisions(svc, request_id)


def test_groups_the_mapping_does_not_know_are_refused(svc: SignedInService, client: httpx.Client) -> None:
    request_id = svc.submit()
    answer = sign_in(client, svc.base_url, svc.provider.users["oscar"])
    assert answer.status_code == 403 and "map to no ACGS role" in answer.text
    assert client.get(f"{svc.base_url}/evolution/review", follow_redirects=False).status_code == 303
    # An auditor's group maps to a role that reads the page but does not decide.
    with _signed_in(svc, "audrey") as audrey:
        refused = _post_form(audrey, svc, request_id, {"reason": "auditing", "csrf": _csrf(audrey, svc)})
        assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "role_not_allowed"
    assert svc.status_of(request_id) == "pending" and not _decisions(svc, request_id)


def test_a_session_is_not_a_credential_for_the_json_api(svc: SignedInService) -> None:
    request_id = svc.submit()
    with _signed_in(svc, "rita") as rita:
        answer = rita.post(f"{svc.base_url}/evolution/requests/{request_id}/approve", json={"reason": "via the API"})
        assert answer.status_code == 401
    assert svc.status_of(request_id) == "pending"


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"])
def test_sign_in_never_sends_the_browser_to_another_site(svc: SignedInService, client: httpx.Client, target: str) -> None:
    answer = sign_in(client, svc.base_url, svc.provider.users["rita"], next_path=target)
    assert answer.status_code == 303 and answer.headers["location"] == "/evolution/review"


def test_a_rotated_provider_key_needs_no_restart(tmp_path: Path) -> None:
    with evolution_with_sign_in(tmp_path) as fresh:
        with _signed_in(fresh, "rita"):
            pass  # the old key's kid is now in the service's cached JWKS
        new = fresh.provider.rotate()
        with _signed_in(fresh, "rita") as rita:
            assert rita.get(f"{fresh.base_url}/evolution/review").status_code == 200
        jwks = httpx.get(f"{fresh.provider.issuer}/jwks").json()
        assert jwks["keys"][0]["kid"] == new["kid"]


def test_settings_that_would_not_be_safe_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    good: dict[str, Any] = {
        "issuer": "https://id.example.org",
        "client_id": "acgs",
        "client_secret_file": secret,
        "redirect_base_url": "https://acgs.example.org",
        "role_map": parse_role_map("reviewers=reviewer"),
    }
    OidcSettings(**good).validate()  # control
    assert OidcSettings(**good).secure_cookie
    for change, message in (
        ({"issuer": "http://id.example.org"}, "use https"),
        ({"redirect_base_url": "http://acgs.example.org"}, "use https"),
        ({"role_map": {}}, "ACGS_OIDC_ROLE_MAP"),
        ({"client_secret_file": None}, "CLIENT_SECRET_FILE"),
    ):
        with pytest.raises(ValueError, match=message):
            OidcSettings(**(good | change)).validate()
    for text in ("ops=service", "ops=root", "=reviewer", "ops"):
        with pytest.raises(ValueError):
            parse_role_map(text)
    directory_group = parse_role_map("cn=rev,ou=groups,dc=example=reviewer,auditor")
    assert directory_group == {"cn=rev,ou=groups,dc=example": frozenset({"reviewer", "auditor"})}
    # Single sign-on without authentication would leave every other route open: refused.
    evolution = EvolutionSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'e.sqlite3'}")
    with pytest.raises(ValueError, match="ACGS_AUTH"):
        create_app(evolution, security=SecuritySettings(data_dir=tmp_path), oidc=OidcSettings(**good))


def test_a_session_past_its_end_or_of_another_issuer_stands_for_nobody(svc: SignedInService) -> None:
    """What the signature cannot say: a session signed by ACGS itself is still refused after its
    lifetime, for another issuer (the configuration changed), or with parts missing."""
    sign_in_ = svc.app.state.oidc
    now = time.time()
    good = {"sub": "rita", "iss": svc.provider.issuer, "groups": ["acgs-reviewers"], "sid": "s", "csrf": "c", "exp": now + 60}
    principal = sign_in_.principal({"session": {"acgs_oidc": good}})
    assert principal is not None and principal.roles == frozenset({"reviewer"})  # control
    assert (principal.via, principal.issuer, principal.subject) == ("oidc", svc.provider.issuer, "rita")
    changes = ({"exp": now - 1}, {"iss": "https://id.other.example"}, {"sub": ""}, {"groups": "acgs-reviewers"}, {"csrf": None})
    for change in changes:
        assert sign_in_.principal({"session": {"acgs_oidc": good | change}}) is None, change
    # Groups the mapping does not know give no role, whatever the session says.
    stranger = sign_in_.principal({"session": {"acgs_oidc": good | {"groups": ["staff", "admins"]}}})
    assert stranger is not None and stranger.roles == frozenset()
