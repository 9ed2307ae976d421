"""Writes data.json and inputs.jsonl for the API-gateway benchmark policy (deterministic).

    python3 bench/policies/gateway/make_data.py

About 60 routes (path globs, methods, required scopes and roles, tenant-scoped paths) and 16
requests carrying fixed HS256 JWTs. The policy decodes the tokens without checking signatures
(the gateway's JWT filter does that), so the key below is only there to make well-formed tokens.
The clock is the request's `now` (seconds), so results never depend on when the benchmark runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOW = 1_796_000_000  # 2026-12-01, the clock every request carries
rng = random.Random(15)

SERVICES = ["users", "orders", "payments", "inventory", "shipping", "catalog", "reviews", "search", "reports", "webhooks"]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(claims: dict[str, object]) -> str:
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "bench-1"}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    sig = hmac.new(b"bench-only-key", f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def routes() -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        {"id": "health", "path": "/healthz", "methods": ["GET"], "public": True},
        {"id": "docs", "path": "/docs/**", "methods": ["GET"], "public": True},
        {"id": "login", "path": "/auth/{login,refresh,logout}", "methods": ["POST"], "public": True},
    ]
    for s in SERVICES:
        out += [
            {"id": f"{s}-list", "path": f"/api/v1/{s}", "methods": ["GET"], "scopes": [f"{s}:read"]},
            {"id": f"{s}-get", "path": f"/api/v1/{s}/*", "methods": ["GET", "HEAD"], "scopes": [f"{s}:read"]},
            {"id": f"{s}-create", "path": f"/api/v1/{s}", "methods": ["POST"], "scopes": [f"{s}:write"]},
            {"id": f"{s}-update", "path": f"/api/v1/{s}/*", "methods": ["PUT", "PATCH"], "scopes": [f"{s}:write"]},
            {"id": f"{s}-delete", "path": f"/api/v1/{s}/*", "methods": ["DELETE"], "scopes": [f"{s}:write"],
             "roles": ["admin"]},
            {"id": f"{s}-tenant", "path": f"/api/v1/tenants/*/{s}/**", "methods": ["GET", "POST", "PUT"],
             "scopes": [f"{s}:read"], "tenant_segment": 4},
        ]
    out.append({"id": "admin", "path": "/admin/**", "methods": ["GET", "POST", "PUT", "DELETE"], "roles": ["admin"],
                "scopes": ["admin"]})
    return out


def main() -> None:
    data = {
        "gateway": {
            "issuers": ["https://auth.example.com/", "https://login.partner.example/"],
            "audience": "api.example.com",
            "leeway_seconds": 30,
            "routes": routes(),
        }
    }
    (HERE / "data.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")

    def claims(**over: object) -> dict[str, object]:
        base: dict[str, object] = {
            "iss": "https://auth.example.com/", "aud": ["api.example.com", "web.example.com"], "sub": "user-1234",
            "iat": NOW - 600, "nbf": NOW - 600, "exp": NOW + 3000, "tenant": "t-042",
            "scope": "users:read orders:read orders:write catalog:read reviews:read", "roles": ["customer"],
        }
        base.update(over)
        return base

    cases: list[tuple[str, str, dict[str, object] | None]] = [
        ("GET", "/api/v1/orders/ord-77812", claims()),
        ("POST", "/api/v1/orders", claims()),
        ("DELETE", "/api/v1/orders/ord-77812", claims()),
        ("DELETE", "/api/v1/orders/ord-77812", claims(roles=["customer", "admin"], sub="ops-7")),
        ("GET", "/api/v1/tenants/t-042/catalog/items/991", claims()),
        ("GET", "/api/v1/tenants/t-999/catalog/items/991", claims()),
        ("GET", "/api/v1/payments/pay-1", claims()),
        ("GET", "/api/v1/users/user-1234", claims(exp=NOW - 60)),
        ("GET", "/api/v1/users/user-1234", claims(iss="https://evil.example/")),
        ("GET", "/api/v1/users/user-1234", claims(aud="api.example.com", scope="users:read")),
        ("GET", "/api/v1/users/user-1234", claims(aud="other.example.com")),
        ("GET", "/healthz", None),
        ("GET", "/docs/api/v1/index.html", None),
        ("GET", "/api/v1/reports/q3", None),
        ("PUT", "/admin/flags/new-checkout", claims(roles=["admin"], scope="admin reports:read")),
        ("GET", "/api/v2/unknown", claims()),
    ]
    inputs = []
    for i, (method, path, c) in enumerate(cases):
        headers = {"user-agent": "bench/1.0", "x-request-id": f"req-{i:04d}"}
        if c is not None:
            headers["authorization"] = "Bearer " + jwt(c)
        inputs.append({"method": method, "path": path, "headers": headers, "now": NOW + rng.randrange(60)})
    (HERE / "inputs.jsonl").write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in inputs))


if __name__ == "__main__":
    main()
