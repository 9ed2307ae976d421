# An example constitution for agent actions, until the full ACGS constitution lands.
package acgs.example

import rego.v1

default allow := false

# Actions any agent may take when it runs sandboxed.
safe_actions := {"data.read_public", "report.generate", "search.web"}

allow if {
	input.action in safe_actions
	input.context.environment.sandbox_enabled
	count(violations) == 0
}

violations contains msg if {
	input.context.agent.trust_level < data.acgs.example.min_trust
	msg := sprintf("trust level %v is below the minimum %v", [input.context.agent.trust_level, data.acgs.example.min_trust])
}

violations contains msg if {
	not input.action in safe_actions
	msg := sprintf("action %q is not in the safe set", [input.action])
}

decision := {
	"allow": allow,
	"reasons": violations,
	"action": input.action,
}
