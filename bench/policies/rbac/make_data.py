"""Writes data.json and inputs.jsonl for the RBAC benchmark policy (deterministic: a fixed seed).

    python3 bench/policies/rbac/make_data.py

The organisation: 120 users in 16 groups, 36 roles with inheritance (up to three levels), about
300 role bindings to users and groups, each bound at one project or at every project ("*").
Permissions are "type:action" with "*" wildcards for either part, and ":own" for actions on
resources the user owns.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
rng = random.Random(15)

TYPES = ["repo", "issue", "pipeline", "secret", "deployment", "dashboard", "billing", "member", "document", "model"]
ACTIONS = ["read", "write", "delete", "admin", "approve", "run"]
PROJECTS = [f"proj-{i:02d}" for i in range(24)]
TEAMS = ["platform", "payments", "search", "ml", "infra", "mobile", "web", "data", "security", "sre", "growth", "support",
         "legal", "finance", "research", "design"]


def roles() -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {
        "viewer": {"permissions": [f"{t}:read" for t in TYPES if t not in ("secret", "billing")], "inherits": []},
        "commenter": {"permissions": ["issue:write", "document:write:own"], "inherits": ["viewer"]},
        "developer": {"permissions": ["repo:write", "issue:write", "pipeline:run", "document:write", "document:delete:own"],
                      "inherits": ["commenter"]},
        "maintainer": {"permissions": ["repo:admin", "pipeline:write", "deployment:write", "issue:delete"],
                       "inherits": ["developer"]},
        "release-manager": {"permissions": ["deployment:approve", "deployment:run"], "inherits": ["maintainer"]},
        "secret-reader": {"permissions": ["secret:read"], "inherits": []},
        "secret-admin": {"permissions": ["secret:*"], "inherits": ["secret-reader"]},
        "billing-viewer": {"permissions": ["billing:read"], "inherits": []},
        "billing-admin": {"permissions": ["billing:*"], "inherits": ["billing-viewer"]},
        "member-admin": {"permissions": ["member:*"], "inherits": ["viewer"]},
        "ml-engineer": {"permissions": ["model:write", "model:run", "pipeline:run"], "inherits": ["developer"]},
        "ml-approver": {"permissions": ["model:approve"], "inherits": ["ml-engineer"]},
        "auditor": {"permissions": ["*:read"], "inherits": []},
        "owner": {"permissions": ["*:*"], "inherits": []},
    }
    # Team-specific roles: each inherits a generic one and adds a few permissions.
    base = ["viewer", "developer", "maintainer", "ml-engineer"]
    for i, team in enumerate(TEAMS):
        for kind in ("lead", "oncall") if i < 11 else ("lead",):
            perms = rng.sample([f"{t}:{a}" for t in TYPES for a in ACTIONS], 3)
            out[f"{team}-{kind}"] = {"permissions": perms, "inherits": [base[(i + len(kind)) % len(base)]]}
    return out


def main() -> None:
    role_table = roles()
    role_names = sorted(role_table)
    groups = {f"team-{t}": {"roles": []} for t in TEAMS}
    users: dict[str, dict[str, object]] = {}
    for i in range(120):
        name = f"user{i:03d}"
        users[name] = {
            "groups": sorted(rng.sample(sorted(groups), rng.choice([1, 1, 2, 3]))),
            "suspended": i % 37 == 5,
        }
    bindings = []
    for g in sorted(groups):
        for _ in range(4):
            bindings.append({"subject": f"group:{g}", "role": rng.choice(role_names[:20]),
                             "scope": rng.choice(PROJECTS[:12])})
    while len(bindings) < 300:
        user = f"user{rng.randrange(120):03d}"
        role = rng.choice(role_names)
        scope = "*" if rng.random() < 0.1 else rng.choice(PROJECTS)
        if role == "owner" and scope == "*":
            continue
        bindings.append({"subject": f"user:{user}", "role": role, "scope": scope})
    data = {"rbac": {"roles": role_table, "groups": groups, "users": users, "bindings": bindings}}
    (HERE / "data.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")

    inputs = []
    suspended = next(u for u, v in users.items() if v["suspended"])
    for i in range(16):
        b = bindings[rng.randrange(len(bindings))]
        if b["subject"].startswith("user:"):
            user = b["subject"][5:]
        else:
            user = rng.choice([u for u, v in users.items() if b["subject"][6:] in v["groups"]])
        project = b["scope"] if b["scope"] != "*" else rng.choice(PROJECTS)
        if i % 2 == 0:  # a request the binding's role (or a parent of it) may grant
            perm = rng.choice(role_table[b["role"]]["permissions"] or ["repo:read"]).split(":")
            rtype = perm[0] if perm[0] != "*" else rng.choice(TYPES)
            action = perm[1] if perm[1] != "*" else rng.choice(ACTIONS)
        else:  # anything at all
            rtype, action, project = rng.choice(TYPES), rng.choice(ACTIONS), rng.choice(PROJECTS)
        if i == 13:
            user = suspended
        if i == 15:
            user = "nobody"
        inputs.append({
            "user": user,
            "action": action,
            "resource": {"type": rtype, "id": f"{rtype}-{i}", "project": project,
                         "owner": user if i % 3 == 0 else "user000"},
            "context": {"ip": f"10.0.{i}.7", "mfa": i % 4 != 2},
        })
    (HERE / "inputs.jsonl").write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in inputs))


if __name__ == "__main__":
    main()
