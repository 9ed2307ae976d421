package bench.rbac_test

import data.bench.rbac

org := {
	"roles": {
		"viewer": {"permissions": ["repo:read"], "inherits": []},
		"commenter": {"permissions": ["issue:write", "document:delete:own"], "inherits": ["viewer"]},
		"developer": {"permissions": ["repo:write"], "inherits": ["commenter"]},
		"maintainer": {"permissions": ["pipeline:run"], "inherits": ["developer"]},
		"secret-admin": {"permissions": ["secret:*"], "inherits": []},
		"auditor": {"permissions": ["*:read"], "inherits": []},
	},
	"groups": {"team-a": {"roles": []}},
	"users": {
		"ann": {"groups": ["team-a"], "suspended": false},
		"bob": {"groups": [], "suspended": false},
		"eve": {"groups": [], "suspended": true},
	},
	"bindings": [
		{"subject": "group:team-a", "role": "maintainer", "scope": "p1"},
		{"subject": "user:bob", "role": "secret-admin", "scope": "*"},
		{"subject": "user:bob", "role": "commenter", "scope": "p2"},
		{"subject": "user:eve", "role": "auditor", "scope": "*"},
	],
}

req(user, type, action, project) := {
	"user": user,
	"action": action,
	"resource": {"type": type, "id": "x", "project": project, "owner": "someone"},
	"context": {"mfa": true},
}

test_group_binding_and_three_levels_of_inheritance if {
	d := rbac.decision with data.rbac as org with input as req("ann", "repo", "read", "p1")
	d.allow
	d.reasons == ["role viewer grants repo:read"]
	d.roles == ["commenter", "developer", "maintainer", "viewer"]
}

test_binding_scope_is_the_project if {
	d := rbac.decision with data.rbac as org with input as req("ann", "repo", "read", "p9")
	not d.allow
	d.reasons == ["no role grants repo:read in p9"]
	d.roles == []
}

test_star_scope_and_action_wildcard if {
	d := rbac.decision with data.rbac as org with input as req("bob", "secret", "delete", "p7")
	d.allow
	d.reasons == ["role secret-admin grants secret:*"]
}

test_suspended_user_is_denied_whatever_the_roles if {
	d := rbac.decision with data.rbac as org with input as req("eve", "billing", "read", "p1")
	not d.allow
	d.reasons == ["user is suspended"]
}

test_type_wildcard if {
	active := json.patch(org, [{"op": "replace", "path": "/users/eve/suspended", "value": false}])
	d := rbac.decision with data.rbac as active with input as req("eve", "billing", "read", "p1")
	d.allow
	d.reasons == ["role auditor grants *:read"]
	d.roles == ["auditor"]
}

test_sensitive_types_need_mfa if {
	r := json.patch(req("bob", "secret", "read", "p1"), [{"op": "replace", "path": "/context/mfa", "value": false}])
	d := rbac.decision with data.rbac as org with input as r
	not d.allow
	d.reasons == ["MFA is required for secret"]
}

test_own_permission_needs_ownership if {
	other := rbac.decision with data.rbac as org with input as req("bob", "document", "delete", "p2")
	not other.allow
	mine := json.patch(req("bob", "document", "delete", "p2"), [{"op": "replace", "path": "/resource/owner", "value": "bob"}])
	d := rbac.decision with data.rbac as org with input as mine
	d.allow
	d.reasons == ["role commenter grants document:delete:own"]
}

test_unknown_user if {
	d := rbac.decision with data.rbac as org with input as req("zed", "repo", "read", "p1")
	not d.allow
	d.reasons == ["unknown user"]
}

test_reasons_list_every_grant_sorted if {
	two := {
		"roles": object.union(org.roles, {"reader2": {"permissions": ["*:read"], "inherits": []}}),
		"groups": {}, "users": {"bob": {"groups": [], "suspended": false}},
		"bindings": [
			{"subject": "user:bob", "role": "viewer", "scope": "*"},
			{"subject": "user:bob", "role": "reader2", "scope": "p1"},
		],
	}
	d := rbac.decision with data.rbac as two with input as req("bob", "repo", "read", "p1")
	d.allow
	d.reasons == ["role reader2 grants *:read", "role viewer grants repo:read"]
}

test_the_generated_data_allows_and_denies if {
	# The shipped data: user bindings resolve, and a made-up action is denied.
	d := rbac.decision with input as req("nobody", "repo", "read", "proj-00")
	d.reasons == ["unknown user"]
	count(data.rbac.bindings) >= 300
}
