package bench.gateway_test

import data.bench.gateway

now := 1796000000

key := {"kty": "oct", "k": "YmVuY2gtb25seS1rZXk"}

good := {
	"iss": "https://auth.example.com/", "aud": ["api.example.com"], "sub": "u1",
	"nbf": now - 60, "exp": now + 600, "tenant": "t-1", "scope": "orders:read orders:write",
	"roles": ["customer"],
}

token(claims) := io.jwt.encode_sign({"alg": "HS256", "typ": "JWT"}, claims, key)

req(method, path, claims) := {"method": method, "path": path, "now": now, "headers": {"authorization": concat(" ", ["Bearer", token(claims)])}}

anon(method, path) := {"method": method, "path": path, "now": now, "headers": {}}

test_token_with_the_scope_is_accepted if {
	d := gateway.decision with input as req("GET", "/api/v1/orders/o-1", good)
	d == {"allow": true, "status": 200, "reasons": ["token accepted"], "route": "orders-get", "subject": "u1"}
}

test_glob_star_stays_within_one_segment if {
	d := gateway.decision with input as req("GET", "/api/v1/orders/o-1/lines", good)
	d.status == 404
	d.reasons == ["no route for GET /api/v1/orders/o-1/lines"]
	d.route == null
}

test_double_star_crosses_segments_and_braces_alternate if {
	gateway.decision.status == 200 with input as anon("GET", "/docs/a/b/c.html")
	gateway.decision.route == "login" with input as anon("POST", "/auth/refresh")
	gateway.decision.status == 404 with input as anon("POST", "/auth/other")
}

test_method_not_allowed if {
	d := gateway.decision with input as req("PATCH", "/api/v1/orders", good)
	d.status == 405
	d.reasons == ["method PATCH not allowed on /api/v1/orders"]
}

test_public_route_needs_no_token if {
	d := gateway.decision with input as anon("GET", "/healthz")
	d == {"allow": true, "status": 200, "reasons": ["public route"], "route": "health", "subject": null}
}

test_missing_or_malformed_token if {
	d := gateway.decision with input as anon("GET", "/api/v1/orders")
	d.status == 401
	d.reasons == ["missing bearer token"]
	m := gateway.decision with input as json.patch(anon("GET", "/api/v1/orders"), [{"op": "add", "path": "/headers/authorization", "value": "Bearer not.a.jwt"}])
	m.status == 401
	m.reasons == ["malformed token"]
	b := gateway.decision with input as json.patch(anon("GET", "/api/v1/orders"), [{"op": "add", "path": "/headers/authorization", "value": "Basic dTpw"}])
	b.reasons == ["missing bearer token"]
}

test_issuer_audience_and_validity_window if {
	d := gateway.decision with input as req("GET", "/api/v1/orders", object.union(good, {"iss": "https://evil/", "aud": "x", "exp": now - 31}))
	d.status == 401
	d.reasons == ["token expired", "token not for this audience", "untrusted issuer https://evil/"]
	n := gateway.decision with input as req("GET", "/api/v1/orders", object.union(good, {"nbf": now + 31}))
	n.reasons == ["token not yet valid"]
	leeway := gateway.decision with input as req("GET", "/api/v1/orders", object.union(good, {"exp": now - 29, "aud": "api.example.com"}))
	leeway.status == 200
	no_iss := gateway.decision with input as req("GET", "/api/v1/orders", object.remove(good, ["iss"]))
	no_iss.reasons == ["token has no issuer"]
}

test_scopes_and_roles if {
	d := gateway.decision with input as req("GET", "/api/v1/payments/p-1", good)
	d.status == 403
	d.reasons == ["missing scope payments:read"]
	del := gateway.decision with input as req("DELETE", "/api/v1/orders/o-1", good)
	del.reasons == ["missing role admin"]
	admin := gateway.decision with input as req("DELETE", "/api/v1/orders/o-1", object.union(good, {"roles": ["admin"]}))
	admin.allow
	both := gateway.decision with input as req("GET", "/admin/x", good)
	both.reasons == ["missing role admin", "missing scope admin"]
}

test_tenant_scoped_paths if {
	ok := gateway.decision with input as req("GET", "/api/v1/tenants/t-1/orders/a/b", good)
	ok.allow
	ok.route == "orders-tenant"
	other := gateway.decision with input as req("GET", "/api/v1/tenants/t-2/orders/a", good)
	other.reasons == ["token is for another tenant"]
}
