"""The reviewers' page: plain HTML rendered on the server, with forms that work without
JavaScript (``static/review.js`` only remembers the reviewer's name and asks before a reject)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from acgs.services.evolution.records import EvolutionRecord, Status, iso

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 1rem 1.5rem; color: #1d1d1f; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin: 0 0 .4rem; }
nav a { margin-right: .8rem; } nav a.current { font-weight: 700; text-decoration: none; color: inherit; }
.notice { background: #e8f5e9; padding: .5rem .8rem; border-radius: 4px; }
.error { background: #fdecea; padding: .5rem .8rem; border-radius: 4px; }
article { border: 1px solid #d2d2d7; border-radius: 6px; padding: .9rem 1rem; margin: 1rem 0; }
.meta { color: #555; font-size: .9rem; } .route { font-weight: 600; }
table { border-collapse: collapse; margin: .4rem 0; } td, th { border-bottom: 1px solid #eee; padding: .15rem .6rem .15rem 0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #b3261e; } .down { color: #1b5e20; }
pre { background: #f5f5f7; padding: .6rem; overflow-x: auto; font-size: .85rem; }
form { display: grid; gap: .4rem; max-width: 40rem; margin-top: .6rem; }
textarea { min-height: 3rem; } .buttons button { margin-right: .5rem; }
pre.diff .add { color: #1b5e20; } pre.diff .del { color: #b3261e; } pre.diff .hunk { color: #555; }
"""


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The reviewer signed in through single sign-on: the forms carry no name field (the
    identity provider says who reviews) but the session's CSRF token, and the page offers a
    sign-out."""

    name: str
    subject: str
    issuer: str
    csrf: str


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _factors(factors: Sequence[dict[str, Any]]) -> str:
    rows = []
    for f in factors:
        contribution = f.get("contribution", 0)
        sign = "up" if isinstance(contribution, int | float) and contribution > 0 else "down"
        rows.append(
            f'<tr><td>{_e(f.get("name", ""))}</td><td class="num {sign}">{_e(f"{contribution:+g}")}</td>'
            f'<td>{_e(f.get("detail", ""))}</td></tr>'
        )
    return '<table class="factors"><tr><th>factor</th><th>risk</th><th>why</th></tr>' + "".join(rows) + "</table>"


def _components(components: dict[str, Any]) -> str:
    if not components:
        return ""
    rows = "".join(
        f'<tr><td>{_e(name)}</td><td class="num">{_e(c.get("score"))}</td><td class="num">× {_e(c.get("weight"))}</td>'
        f'<td class="num">{_e(c.get("contribution"))}</td></tr>'
        for name, c in sorted(components.items())
        if isinstance(c, dict)
    )
    return '<table class="components"><tr><th>component</th><th>score</th><th>weight</th><th>points</th></tr>' + rows + "</table>"


def _diff(text: str) -> str:
    """An agent may send the change itself as ``changes.diff`` (unified diff text)."""
    lines = []
    for line in text.splitlines():
        kind = "hunk" if line.startswith("@@") else "add" if line.startswith("+") else "del" if line.startswith("-") else ""
        lines.append(f'<span class="{kind}">{_e(line)}</span>' if kind else _e(line))
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def _list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(x)}</li>" for x in items) + "</ul>" if items else ""


def _form(r: EvolutionRecord, who: SignedIn | None) -> str:
    if r.status is not Status.PENDING:
        return ""
    rid = _e(r.request_id)
    if who is None:
        reviewer = '<label>Reviewer <input name="reviewer" class="reviewer" required autocomplete="username"></label>'
    else:
        reviewer = f'<input type="hidden" name="csrf" value="{_e(who.csrf)}">'
    return f"""
<form method="post" action="/evolution/review/{rid}/approve" data-request="{rid}">
  {reviewer}
  <label>Reason <textarea name="reason" required></textarea></label>
  <div class="buttons">
    <button type="submit" name="verdict" value="approve">Approve</button>
    <button type="submit" name="verdict" value="reject" formaction="/evolution/review/{rid}/reject" class="reject">Reject</button>
  </div>
</form>"""


def _action_card(r: EvolutionRecord, who: SignedIn | None) -> str:
    """A single tool call held for approval: tool, arguments (or their digest when the service's
    decision redacts them), agent, session and the constitution's reasons."""
    s, a = r.submission, r.assessment
    approvals = ", ".join(f"{_e(x.reviewer)} ({_e(x.reason)})" for x in r.approvals) or "none yet"
    if "arguments" in s:
        arguments = f'<pre class="arguments">{_e(json.dumps(s["arguments"], indent=2, sort_keys=True))}</pre>'
    else:
        arguments = f'<p class="arguments redacted">redacted by the constitution; SHA-256 {_e(s.get("arguments_sha256", ""))}</p>'
    # The roles the constitution names for this approval (older requests kept them in the submission).
    named = a.get("roles") or s.get("roles") or []
    roles = f" · roles {_e(', '.join(str(r) for r in named))}" if named else ""
    return f"""
<article id="{_e(r.request_id)}" data-status="{_e(r.status.value)}" data-kind="action">
  <h2><a href="/evolution/review/{_e(r.request_id)}" class="detail">tool call {_e(s.get("tool", ""))} by agent {_e(r.agent_id)}</a></h2>
  <p class="meta">{_e(r.request_id)} · session {_e(s.get("session_id") or "-")} · decision {_e(r.decision_id)} ·
     requested by {_e(r.requested_by)} · {_e(iso(r.created_at))} · status <b>{_e(r.status.value)}</b> ·
     review by {_e(iso(r.review_deadline) if r.status is Status.PENDING else "-")}</p>
  <p><span class="route">action</span>: {_e(len(r.approvals))} of {_e(r.reviewers_required)} approvals
     ({approvals}) · risk {_e(a.get("risk_level") or "-")}{roles}</p>
  {_list(a.get("reasons", []))}
  <details open><summary>Arguments</summary>{arguments}</details>
  {_form(r, who)}
</article>"""


def _card(r: EvolutionRecord, who: SignedIn | None = None) -> str:
    if r.kind == "action":
        return _action_card(r, who)
    a = r.assessment
    approvals = ", ".join(f"{_e(x.reviewer)} ({_e(x.reason)})" for x in r.approvals) or "none yet"
    given = dict(r.submission.get("changes") or {})
    diff = given.pop("diff", None)
    changes = json.dumps(given, indent=2, sort_keys=True)
    plan = json.dumps(r.submission.get("rollback_plan", {}), indent=2, sort_keys=True)
    perf = r.submission.get("performance_analysis")
    extra = ""
    if r.submission.get("justification"):
        extra += f"<p><b>Justification:</b> {_e(r.submission['justification'])}</p>"
    if r.submission.get("description"):
        extra += f"<p><b>Description:</b> {_e(r.submission['description'])}</p>"
    if perf:
        extra += f"<details><summary>Performance analysis</summary><pre>{_e(json.dumps(perf, indent=2, sort_keys=True))}</pre></details>"
    form = _form(r, who)
    return f"""
<article id="{_e(r.request_id)}" data-status="{_e(r.status.value)}">
  <h2><a href="/evolution/review/{_e(r.request_id)}" class="detail">{_e(r.type)} for agent {_e(r.agent_id)}</a></h2>
  <p class="meta">{_e(r.request_id)} · requested by {_e(r.requested_by)} · {_e(iso(r.created_at))} ·
     status <b>{_e(r.status.value)}</b> · review by {_e(iso(r.review_deadline) if r.status is Status.PENDING else "-")}</p>
  <p><span class="route">{_e(r.approval_type)}</span>: {_e(len(r.approvals))} of {_e(r.reviewers_required)} approvals
     ({approvals}) · risk {_e(a.get("risk_score"))} ({_e(a.get("risk_level"))}) · evolution score {_e(a.get("evolution_score"))}</p>
  {_list(a.get("reasons", []))}
  {_factors(a.get("factors", []))}
  {_components(a.get("score_components") or {})}
  {extra}
  <details open><summary>Changes</summary><pre class="changes">{_e(changes)}</pre>{_diff(diff) if isinstance(diff, str) else ""}</details>
  <details><summary>Rollback plan</summary><pre>{_e(plan)}</pre></details>
  {form}
</article>"""


def page(
    records: Sequence[EvolutionRecord],
    *,
    total: int,
    status: Status,
    notice: str | None = None,
    error: str | None = None,
    who: SignedIn | None = None,
) -> str:
    tabs = " ".join(
        f'<a href="/evolution/review?status={s.value}"{" class=current" if s is status else ""}>{s.value}</a>' for s in Status
    )
    shown = f"{len(records)} of {total}" if total > len(records) else str(total)
    cards = "".join(_card(r, who) for r in records) or f"<p>No {status.value} requests.</p>"
    body = f"""<nav>{tabs}</nav>
{_banner(notice, error)}
<p class="meta">{_e(shown)} {_e(status.value)} request(s)</p>
<main>{cards}</main>"""
    return _document("ACGS evolution review", body, who)


def detail(record: EvolutionRecord, *, error: str | None = None, who: SignedIn | None = None) -> str:
    """One request on its own page, whatever its status, with its history."""
    history = "".join(
        f"<tr><td>{_e(h.get('at', ''))}</td><td>{_e(h.get('from', ''))} → {_e(h.get('to', ''))}</td>"
        f"<td>{_e(h.get('actor', ''))}</td><td>{_e(h.get('reason', ''))}</td></tr>"
        for h in record.history
    )
    body = f"""<nav><a href="/evolution/review">pending</a>
<a href="/evolution/review?status={_e(record.status.value)}">{_e(record.status.value)}</a></nav>
{_banner(None, error)}
<main>{_card(record, who)}
<details><summary>History</summary><table class="history">{history}</table></details></main>"""
    return _document(f"ACGS evolution review: {record.request_id}", body, who)


def _banner(notice: str | None, error: str | None) -> str:
    banner = ""
    if notice:
        banner += f'<p class="notice" role="status">{_e(notice)}</p>'
    if error:
        banner += f'<p class="error" role="alert">{_e(error)}</p>'
    return banner


def _signed_in(who: SignedIn | None) -> str:
    if who is None:
        return ""
    return f"""<form class="signed-in meta" method="post" action="/auth/logout">
  Signed in as <b class="who">{_e(who.name)}</b> ({_e(who.subject)} at {_e(who.issuer)})
  <input type="hidden" name="csrf" value="{_e(who.csrf)}"><button type="submit" class="sign-out">Sign out</button>
</form>"""


def _document(title: str, body: str, who: SignedIn | None = None) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_STYLE}</style>
<script src="/evolution/static/review.js" defer></script>
</head>
<body>
<h1>ACGS evolution review</h1>
{_signed_in(who)}
{body}
</body>
</html>
"""
