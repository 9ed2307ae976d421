# API-gateway benchmark policy: a request (method, path, headers, the gateway's clock `now` in
# seconds) is matched against route globs; a protected route needs a bearer JWT from a trusted
# issuer, for this audience, inside its validity window, with the route's scopes and roles, and
# for tenant-scoped paths the token's tenant. Signatures are the JWT filter's job before this
# policy; the policy decodes the token with io.jwt.decode. The decision carries the HTTP status.
#
# Data (data.gateway) comes from make_data.py: 64 routes.
package bench.gateway

gw := data.gateway

# Routes whose glob matches the path, in their order; then those that also take the method.
# (`some i` and an index rather than `some i, r in gw.routes`: rego-cpp 1.5.2 refuses the
# two-variable `some ... in` inside a comprehension.)
path_matches := [i |
	some i
	r := gw.routes[i]
	glob.match(r.path, ["/"], input.path)
]

method_matches := [i |
	some i in path_matches
	input.method in gw.routes[i].methods
]

route := gw.routes[method_matches[0]]

public if route.public == true

# The bearer token and its claims (undefined when absent or not a JWT).
bearer := substring(auth, 7, -1) if {
	auth := input.headers.authorization
	startswith(auth, "Bearer ")
}

claims := payload if {
	[_, payload, _] := io.jwt.decode(bearer)
}

audiences := {a | some a in claims.aud} if is_array(claims.aud)

audiences := {claims.aud} if is_string(claims.aud)

token_scopes := {s |
	some s in split(claims.scope, " ")
	s != ""
}

token_roles := {r | some r in claims.roles}

# 401: who is calling cannot be established.
unauthenticated contains "missing bearer token" if not bearer

unauthenticated contains "malformed token" if {
	bearer
	not claims
}

unauthenticated contains concat(" ", ["untrusted issuer", claims.iss]) if not claims.iss in gw.issuers

unauthenticated contains "token has no issuer" if {
	claims
	not claims.iss
}

unauthenticated contains "token not for this audience" if {
	claims
	not gw.audience in audiences
}

# A token without exp never expires here; one without nbf is valid from the start.
unauthenticated contains "token expired" if claims.exp + gw.leeway_seconds <= input.now

unauthenticated contains "token not yet valid" if claims.nbf - gw.leeway_seconds > input.now

# 403: the caller is known but may not do this.
forbidden contains concat(" ", ["missing scope", s]) if {
	some s in route.scopes
	not s in token_scopes
}

forbidden contains concat(" ", ["missing role", r]) if {
	some r in route.roles
	not r in token_roles
}

forbidden contains "token is for another tenant" if {
	route.tenant_segment
	split(input.path, "/")[route.tenant_segment] != claims.tenant
}

status := 404 if {
	count(path_matches) == 0
} else := 405 if {
	count(method_matches) == 0
} else := 200 if {
	public
} else := 401 if {
	count(unauthenticated) > 0
} else := 403 if {
	count(forbidden) > 0
} else := 200

reasons := [concat(" ", ["no route for", input.method, input.path])] if {
	status == 404
} else := [concat(" ", ["method", input.method, "not allowed on", input.path])] if {
	status == 405
} else := sort([r | some r in unauthenticated]) if {
	status == 401
} else := sort([r | some r in forbidden]) if {
	status == 403
} else := ["public route"] if {
	public
} else := ["token accepted"]

default route_id := null

route_id := route.id

default subject := null

subject := claims.sub

decision := {
	"allow": status == 200,
	"status": status,
	"reasons": reasons,
	"route": route_id,
	"subject": subject,
}
