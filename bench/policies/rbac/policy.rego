# RBAC benchmark policy: users belong to groups; role bindings give a user or a group a role at
# one project or at every project ("*"); roles inherit other roles (up to three levels); a role's
# permissions are "type:action", with "*" for either part, and "type:action:own" for resources
# the user owns. Secrets and billing also need MFA. The decision says why.
#
# Data (data.rbac) comes from make_data.py: 120 users, 16 groups, 36 roles, 300 bindings.
package bench.rbac

rbac := data.rbac

user := rbac.users[input.user]

# Every subject the request speaks for: the user and the user's groups.
subjects contains concat(":", ["user", input.user]) if user

subjects contains concat(":", ["group", g]) if {
	some g in user.groups
}

# Roles bound to those subjects where the binding's scope covers the resource's project.
bound contains b.role if {
	some b in rbac.bindings
	b.subject in subjects
	scope_covers(b.scope)
}

# (Not the shorter `scope_covers("*")`: regorus 0.14.1 refuses a function rule without a body.)
scope_covers(scope) if scope == "*"

scope_covers(scope) if scope == input.resource.project

# Inheritance, three levels deep (Rego has no recursive rules).
inherited_1 contains parent if {
	some r in bound
	some parent in rbac.roles[r].inherits
}

inherited_2 contains parent if {
	some r in inherited_1
	some parent in rbac.roles[r].inherits
}

inherited_3 contains parent if {
	some r in inherited_2
	some parent in rbac.roles[r].inherits
}

roles := (bound | inherited_1) | (inherited_2 | inherited_3)

# The permission strings that grant the request's action on its resource type.
wanted := {
	concat(":", [input.resource.type, input.action]),
	concat(":", ["*", input.action]),
	concat(":", [input.resource.type, "*"]),
	"*:*",
}

owned if input.resource.owner == input.user

# grants[role] = the permission of that role that matched.
grants contains [r, p] if {
	some r in roles
	some p in rbac.roles[r].permissions
	p in wanted
}

grants contains [r, p] if {
	owned
	some r in roles
	some p in rbac.roles[r].permissions
	endswith(p, ":own")
	parts := split(p, ":")
	count(parts) == 3
	concat(":", [parts[0], parts[1]]) in wanted
}

sensitive if input.resource.type in {"secret", "billing"}

mfa_ok if not sensitive

mfa_ok if input.context.mfa == true

denials contains "unknown user" if not user

denials contains "user is suspended" if user.suspended == true

denials contains concat(" ", ["MFA is required for", input.resource.type]) if not mfa_ok

denials contains concat("", ["no role grants ", input.resource.type, ":", input.action, " in ", input.resource.project]) if {
	user
	count(grants) == 0
}

allow if {
	count(denials) == 0
	count(grants) > 0
}

default allow := false

reasons := sort([concat("", ["role ", g[0], " grants ", g[1]]) | some g in grants]) if allow

reasons := sort([d | some d in denials]) if not allow

decision := {
	"allow": allow,
	"reasons": reasons,
	"roles": sort([r | some r in roles]),
}
