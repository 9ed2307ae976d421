"""Dependencies of the evolution routes: the workflow, and who is calling.

With authentication on (``ACGS_AUTH``), the caller is the principal the API key or JWT stands
for, with its roles; identity headers and the review form's name field are ignored, so nobody
acts under another name. With single sign-on on (``ACGS_OIDC_ISSUER``), a reviewer on the page is
the person the identity provider signed in: a name typed into the form is refused. With
authentication off, ``X-ACGS-Identity`` (``X-ACGS-Reviewer`` is accepted as
the same thing) names the caller and ``X-ACGS-Role`` lists its roles, comma-separated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request

from acgs.security import principal_of
from acgs.security.oidc import sign_in_of
from acgs.services.evolution.workflow import InvalidRequest, NotPermitted, Principal, Workflow, WorkflowError

IDENTITY_HEADERS = ("x-acgs-identity", "x-acgs-reviewer")
ROLE_HEADER = "x-acgs-role"
REVIEWER = "reviewer"


class Unauthenticated(WorkflowError):
    status = 401
    code = "unauthenticated"


class MissingRole(WorkflowError):
    status = 403
    code = "forbidden"


class CsrfFailed(WorkflowError):
    """A signed-in reviewer's form without the session's CSRF token (another page's post)."""

    status = 403
    code = "csrf_failed"


def _roles(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset()
    return frozenset(r.strip().lower() for r in text.split(",") if r.strip())


def caller_from_headers(headers: Mapping[str, str]) -> Principal | None:
    for name in IDENTITY_HEADERS:
        identity = (headers.get(name) or "").strip()
        if identity:
            return Principal(identity=identity, roles=_roles(headers.get(ROLE_HEADER)))
    return None


def authenticated(request: Request) -> Principal | None:
    """The principal the gate authenticated, or None when authentication is off."""
    found = principal_of(request.scope)
    return None if found is None else Principal(identity=found.subject, roles=found.roles)


def caller_of(request: Request) -> Principal | None:
    return authenticated(request) or caller_from_headers(request.headers)


def check_requester(request: Request, requested_by: str | None) -> None:
    """With authentication on, a change is requested by the caller itself (an admin may name
    someone else): otherwise an agent could name another requester and review its own change."""
    caller = authenticated(request)
    if caller is not None and requested_by not in (None, caller.identity) and not caller.has("admin"):
        raise NotPermitted(f"requested_by must be the caller ({caller.identity}) or left out")


def reviewer_from_form(request: Request, fields: Mapping[str, str]) -> Principal:
    """The reviewer behind a form on the review page: the authenticated principal, else the
    header identity when there is one, else the name typed into the form, in the reviewer role
    (the page is the reviewers' tool). With single sign-on on, the form must carry the
    session's CSRF token and no name: the reviewer is who the identity provider signed in."""
    sign_in = sign_in_of(request.app)
    if sign_in is not None:
        if (fields.get("reviewer") or "").strip():
            raise InvalidRequest(
                "with single sign-on the reviewer is the signed-in user: a name typed into the form is not accepted"
            )
        found = authenticated(request)
        if found is None:
            raise Unauthenticated("sign in first: /auth/login")
        who = principal_of(request.scope)
        if who is not None and who.via == "oidc" and not sign_in.check_csrf(request.scope, fields.get("csrf")):
            raise CsrfFailed("the form's CSRF token does not match your session: reload the page and try again")
        return require_role(found, REVIEWER)
    found = caller_of(request)
    if found is not None:
        return require_role(found, REVIEWER)
    name = (fields.get("reviewer") or "").strip()
    if not name:
        raise Unauthenticated("enter your reviewer name")
    return Principal(identity=name, roles=frozenset({REVIEWER}))


def require_role(principal: Principal, role: str) -> Principal:
    if not principal.has(role):
        raise MissingRole(f"{principal.identity} lacks the {role} role (send X-ACGS-Role: {role})")
    return principal


def get_workflow(request: Request) -> Workflow:
    workflow: Workflow = request.app.state.workflow
    return workflow


def optional_caller(request: Request) -> Principal | None:
    return caller_of(request)


def required_caller(request: Request) -> Principal:
    found = caller_of(request)
    if found is None:
        raise Unauthenticated("identify yourself with the X-ACGS-Identity header")
    return found


def required_reviewer(request: Request) -> Principal:
    return require_role(required_caller(request), REVIEWER)


WorkflowDep = Annotated[Workflow, Depends(get_workflow)]
CallerDep = Annotated[Principal | None, Depends(optional_caller)]
PrincipalDep = Annotated[Principal, Depends(required_caller)]
ReviewerDep = Annotated[Principal, Depends(required_reviewer)]
