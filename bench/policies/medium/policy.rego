# Medium benchmark policy: an agent tool-call check that walks role and tool catalogues in
# data, builds sets, scores risk and formats violation messages with sprintf (a host builtin
# under Wasm, so the host's builtin call path is part of what is measured).
package bench.medium

default allow := false

catalog := data.catalog

tenant := catalog.tenants[input.agent.tenant]

tool := catalog.tools[input.action.tool]

permissions contains perm if {
	some role in input.agent.roles
	some perm in catalog.roles[role].permissions
}

inherited contains perm if {
	some role in input.agent.roles
	some parent in catalog.roles[role].inherits
	some perm in catalog.roles[parent].permissions
}

effective := permissions | inherited

pii_fields := {f | some f in catalog.pii_fields}

pii_requested contains f if {
	some f in input.action.fields
	f in pii_fields
}

blocked_targets contains host if {
	some target in input.action.targets
	host := target.host
	some suffix in catalog.blocked_domains
	endswith(host, suffix)
}

untrusted_schemes contains target.scheme if {
	some target in input.action.targets
	not target.scheme in {"https", "grpcs"}
}

sandbox_penalty := 0 if input.context.sandbox
else := 3

risk := ((tool.risk + (2 * count(pii_requested))) + (5 * count(blocked_targets))) + sandbox_penalty

violations contains msg if {
	not tool.permission in effective
	msg := sprintf("agent %s lacks permission %s", [input.agent.id, tool.permission])
}

violations contains msg if {
	some host in blocked_targets
	msg := sprintf("target %s is on the block list", [host])
}

violations contains msg if {
	risk > tenant.max_risk
	msg := sprintf("risk %d exceeds the tenant limit %d", [risk, tenant.max_risk])
}

violations contains "tool is not enabled for this tenant" if not input.action.tool in tenant.allowed_tools

violations contains "request comes from outside the tenant's region" if input.context.region != tenant.region

violations contains "agent trust level is below the tool's minimum" if input.agent.trust_level < tool.min_trust

violations contains "session action budget exhausted" if input.context.session.actions >= tenant.max_actions

violations contains "PII requested without the pii.read permission" if {
	count(pii_requested) > 0
	not "pii.read" in effective
}

violations contains "insecure transport" if count(untrusted_schemes) > 0

obligations contains "audit" if risk >= 3

obligations contains "redact" if count(pii_requested) > 0

obligations contains "human_review" if risk > 8

allow if {
	count(violations) == 0
	tool
	tenant
}

decision := {
	"allow": allow,
	"violations": violations,
	"obligations": obligations,
	"risk": risk,
	"permissions": count(effective),
}
