# ACGS action decisions: may this agent take this action now?
#
# Entry points: data.acgs.main.decision (the decision object) and data.acgs.main.allow.
# Every list, weight and limit comes from the constitution at data.acgs.constitution; see
# policies/README.md for the model, the hard rules and the fast-path contract.
#
# Input (all optional unless noted; a field present with the wrong type is a deny):
#   constitutional_hash (required), action (required), type,
#   context.environment.{sandbox_enabled, audit_enabled}, context.agent.trust_level (required),
#   context.agent.requested_resources.{cpu_cores, memory_gb, disk_gb, network_mbps,
#   execution_time_seconds}, context.{responsible_party, explanation, code,
#   benefit_assessment, harm_risk_assessment, fairness_assessment,
#   overrides_user_preference, user_consent, affects_protected_groups},
#   trusted.{request_count_1m, agent.trust_level} (set by the service from its own counters and
#   the agent registry; whatever a client sends under "trusted" is dropped before evaluation).
# The action is matched in its canonical form (lib.action_name) and must be in the
# constitution's grammar (action_grammar) and catalogue (actions, safe_actions,
# explanation_required_actions): an unknown action is denied, never scored as harmless.
# Fields the policy does not read (session_id, urgency, isolation_level, capabilities, ...)
# have no influence on the decision and are never echoed.
package acgs.main

import data.acgs.lib

c := data.acgs.constitution

# A dangerous action is refused before any other field is read, so its decision depends on
# the action alone: the fast path's deny contract (fast_path.deny_actions). The hash is not
# checked for these on purpose; a mismatch could only turn this deny into another deny.
decision := dangerous_decision if {
	dangerous_action
} else := not_an_object_decision if {
	not lib.input_is_object
} else := evaluated_decision

allow := decision.allow

dangerous_action if {
	is_object(input)
	action_name in c.dangerous_actions
}

# The action as every list is matched against it; undefined unless input.action is a string.
# A rule, so it is computed once per decision.
action_name := lib.action_name(input.action)

valid_action_name if lib.valid_action_name(action_name)

safe_action if action_name in c.safe_actions

known_action if action_name in c.actions

known_action if action_name in c.safe_actions

known_action if action_name in c.explanation_required_actions

zero_details := {
	"safety": 0,
	"constitutional": {"score": 0, "principles": {p: 0 | some p in scored_principles}},
	"resources": 0,
	"transparency": 0,
}

dangerous_decision := {
	"allow": false,
	"compliance_score": 0,
	"reasons": [sprintf("action %s is dangerous and always denied", [action_name])],
	"conditions": [],
	"evaluation_details": zero_details,
	"constitutional_hash": c.constitutional_hash,
}

not_an_object_decision := {
	"allow": false,
	"compliance_score": 0,
	"reasons": ["input must be a JSON object"],
	"conditions": [],
	"evaluation_details": zero_details,
	"constitutional_hash": c.constitutional_hash,
}

evaluated_decision := {
	"allow": allowed,
	"compliance_score": compliance_score,
	"reasons": reasons,
	"conditions": conditions,
	"evaluation_details": evaluation_details,
	"constitutional_hash": c.constitutional_hash,
}

default allowed := false

allowed if {
	count(violations) == 0
	compliance_score >= c.thresholds.allow
}

reasons := sort(findings | verdicts)

verdicts contains msg if {
	allowed
	msg := sprintf("compliance score %v meets the threshold %v", [compliance_score, c.thresholds.allow])
}

verdicts contains msg if {
	compliance_score < c.thresholds.allow
	msg := sprintf("compliance score %v is below the threshold %v", [compliance_score, c.thresholds.allow])
}

# Hard-rule violations deny whatever the score; soft findings only explain a lower score.
findings := violations | deficiencies

conditions := sort(array.concat(c.obligations.all, extra_obligations)) if {
	allowed
} else := []

extra_obligations := [] if {
	safe_action
} else := c.obligations.not_safe

# ---------------------------------------------------------------------------
# Views of the request, with the constitution's defaults for absent or mistyped fields.

ctx := input.context if {
	is_object(input.context)
} else := {}

env := ctx.environment if {
	is_object(ctx.environment)
} else := {}

agent := ctx.agent if {
	is_object(ctx.agent)
} else := {}

requested := agent.requested_resources if {
	is_object(agent.requested_resources)
} else := {}

# Facts the service fills in (its usage counters, the caller's registry record) after dropping
# whatever the client sent under "trusted".
trusted := input.trusted if {
	is_object(input.trusted)
} else := {}

sandboxed if env.sandbox_enabled == true

audited if env.audit_enabled == true

has_responsible_party if lib.nonempty_string(ctx.responsible_party)

assessment(name) := v if {
	v := ctx[name]
	lib.unit_interval(v)
} else := scoring.defaults[name]

overrides_user if ctx.overrides_user_preference == true

user_consented if ctx.user_consent == true

# The usage count comes only from input.trusted, which the service fills in from its own
# rate limiter: requests by this caller in the current window, this one included. The
# client's own figures (the original's context.current_usage_count) are never read. With no
# trusted counter (embedded evaluation without a limiter) no rate limit applies.
rate_limit := c.rate_limits.per_minute.decision

rate_limited if {
	n := trusted.request_count_1m
	is_number(n)
	n > rate_limit
}

rate_count_valid if not lib.present(trusted, ["request_count_1m"])

rate_count_valid if {
	n := trusted.request_count_1m
	is_number(n)
	n >= 0
}

explanation_required if action_name in c.explanation_required_actions

# Where the constitution requires an explanation (explanation_required_actions) it must be
# at least explanation_min_chars characters; elsewhere, safe actions included, none is
# required and the transparency credit is given, as in the original model. So the seed
# flow's 35-character explanation for data.read_public earns the full credit.
explanation_adequate if not explanation_required

explanation_adequate if {
	explanation_required
	is_string(ctx.explanation)
	count(ctx.explanation) >= c.thresholds.explanation_min_chars
}

# ---------------------------------------------------------------------------
# Scores: safety 0.3 + constitutional 0.4 + resources 0.2 + transparency 0.1 (weights in
# data), each sub-score clamped to [0, 1].

scoring := c.scoring

# not_dangerous is always earned here: dangerous actions never reach the scoring.
safety_raw := sum([scoring.safety.not_dangerous, sandbox_credit, rate_credit])

sandbox_credit := scoring.safety.sandboxed if {
	sandboxed
} else := 0

rate_credit := scoring.safety.within_rate_limit if {
	rate_count_valid
	not rate_limited
} else := 0

scored_principles := sort([p | some p, spec in c.principles; spec.weight > 0])

autonomy := scoring.autonomy.respected if {
	not overrides_user
} else := scoring.autonomy.overridden_with_consent if {
	user_consented
} else := scoring.autonomy.overridden_without_consent

accountability := sum([audit_accountability, party_accountability])

audit_accountability := scoring.accountability.audit if {
	audited
} else := 0

party_accountability := scoring.accountability.responsible_party if {
	has_responsible_party
} else := 0

principle_raw := {
	"autonomy": autonomy,
	"beneficence": assessment("benefit_assessment"),
	"non_maleficence": 1 - assessment("harm_risk_assessment"),
	"fairness": assessment("fairness_assessment"),
	"accountability": accountability,
}

principle_scores := {p: lib.clamp01(principle_raw[p]) | some p in scored_principles}

constitutional_raw := sum(weighted) / sum(weights) if {
	weighted := [x | some p in scored_principles; x := c.principles[p].weight * principle_scores[p]]
	weights := [c.principles[p].weight | some p in scored_principles]
}

constitutional_score := lib.round_score(lib.clamp01(constitutional_raw))

# min(1, limit / max(requested, 1)) per requested resource, averaged; 1 when none requested.
resource_ratios := [ratio |
	some k in sort(object.keys(requested))
	limit := c.resource_limits[k]
	v := requested[k]
	is_number(v)
	v >= 0
	ratio := resource_ratio(limit, max([v, 1]))
]

# min(1, limit / v), without the division when the limit covers the request (the quotient
# would be at least 1): decimal division is among the dearest steps in OPA's Wasm.
resource_ratio(limit, v) := 1 if {
	is_number(limit)
	limit >= v
} else := min([1, limit / v])

resources_raw := sum(resource_ratios) / count(resource_ratios) if {
	count(resource_ratios) > 0
} else := 1

transparency_raw := sum([scoring.transparency.base, explanation_credit, audit_transparency])

explanation_credit := scoring.transparency.explanation if {
	explanation_adequate
} else := 0

audit_transparency := scoring.transparency.audit if {
	audited
} else := 0

safety_score := lib.clamp01(safety_raw)

resources_score := lib.clamp01(resources_raw)

transparency_score := lib.clamp01(transparency_raw)

compliance_score := lib.round_score(sum([
	scoring.weights.safety * safety_score,
	scoring.weights.constitutional * lib.clamp01(constitutional_raw),
	scoring.weights.resources * resources_score,
	scoring.weights.transparency * transparency_score,
]))

evaluation_details := {
	"safety": lib.round_score(safety_score),
	"constitutional": {
		"score": constitutional_score,
		"principles": {p: lib.round_score(v) | some p, v in principle_scores},
	},
	"resources": lib.round_score(resources_score),
	"transparency": lib.round_score(transparency_score),
}

# ---------------------------------------------------------------------------
# Soft findings: explain a lost credit, deny only through the score.

deficiencies contains "sandbox is not enabled" if not sandboxed

deficiencies contains "audit is not enabled" if not audited

deficiencies contains "no responsible party is named" if not has_responsible_party

deficiencies contains msg if {
	not explanation_adequate
	msg := sprintf("action %s requires an explanation of at least %v characters", [action_name, c.thresholds.explanation_min_chars])
}

# ---------------------------------------------------------------------------
# Hard rules: each one denies regardless of the score.

typed_fields := [
	{"path": ["context"], "type": "object"},
	{"path": ["context", "environment"], "type": "object"},
	{"path": ["context", "environment", "sandbox_enabled"], "type": "boolean"},
	{"path": ["context", "environment", "audit_enabled"], "type": "boolean"},
	{"path": ["context", "agent"], "type": "object"},
	{"path": ["context", "agent", "trust_level"], "type": "number"},
	{"path": ["context", "agent", "requested_resources"], "type": "object"},
	{"path": ["context", "responsible_party"], "type": "string"},
	{"path": ["context", "explanation"], "type": "string"},
	{"path": ["context", "code"], "type": "string"},
	{"path": ["context", "benefit_assessment"], "type": "number"},
	{"path": ["context", "harm_risk_assessment"], "type": "number"},
	{"path": ["context", "fairness_assessment"], "type": "number"},
	{"path": ["context", "overrides_user_preference"], "type": "boolean"},
	{"path": ["context", "user_consent"], "type": "boolean"},
	{"path": ["context", "affects_protected_groups"], "type": "boolean"},
	{"path": ["trusted"], "type": "object"},
	{"path": ["trusted", "request_count_1m"], "type": "number"},
	{"path": ["trusted", "agent"], "type": "object"},
	{"path": ["trusted", "agent", "trust_level"], "type": "number"},
]

unit_fields := [
	["context", "agent", "trust_level"],
	["context", "benefit_assessment"],
	["context", "harm_risk_assessment"],
	["context", "fairness_assessment"],
	["trusted", "agent", "trust_level"],
]

violations contains msg if some msg in lib.hash_reasons(input)

violations contains msg if some msg in lib.type_reasons(input, typed_fields)

violations contains msg if some msg in lib.unit_reasons(input, unit_fields)

violations contains msg if some msg in lib.non_negative_reasons(input, [["trusted", "request_count_1m"]])

violations contains "action is missing" if lib.absent(input, ["action"])

violations contains "action must be a non-empty string" if {
	lib.present(input, ["action"])
	not lib.nonempty_string(object.get(input, "action", null))
}

violations contains msg if {
	lib.nonempty_string(object.get(input, "action", null))
	not valid_action_name
	msg := sprintf("action is not a valid action name: dot-separated segments of the characters %s, at most %v characters", [c.action_grammar.characters, c.action_grammar.max_length])
}

violations contains msg if {
	valid_action_name
	not known_action
	msg := sprintf("action %s is not in the constitution's action catalogue", [action_name])
}

violations contains msg if {
	t := input.type
	not t in c.request_types
	msg := sprintf("type %v is not one of: %s", [t, concat(", ", c.request_types)])
}

# Trust: the original computed this and ignored it. The claim counts only as far as the
# registry allows (lib.believed_trust).
trust_level := lib.believed_trust(agent, trusted)

violations contains "context.agent.trust_level is missing" if {
	lib.absent(input, ["context", "agent", "trust_level"])
	not registered_trust
}

registered_trust if is_number(trusted.agent.trust_level)

violations contains msg if {
	t := trust_level
	t < c.thresholds.trust
	msg := sprintf("trust level %v is below the minimum %v", [t, c.thresholds.trust])
}

# Critical safety patterns in the action, the explanation or the code.
violations contains msg if {
	is_string(input.action)
	some p in lib.action_patterns_in(input.action)
	msg := sprintf("action %s matches the critical safety pattern %s", [input.action, p])
}

violations contains msg if {
	some field in ["action", "explanation", "code"]
	text := pattern_text[field]
	some p in lib.text_patterns_in(text)
	msg := sprintf("%s contains the critical safety pattern: %s", [field, p])
}

pattern_text[field] := text if {
	field := "action"
	text := input.action
	is_string(text)
}

pattern_text[field] := text if {
	some field in ["explanation", "code"]
	text := ctx[field]
	is_string(text)
}

# Resources: one key per limit, named as in resource_limits. An unknown key is refused
# rather than ignored, so a misspelt limit can never go unchecked.
violations contains msg if {
	some k, _ in requested
	not c.resource_limits[k]
	msg := sprintf("unknown resource %s (known: %s)", [k, concat(", ", sort(object.keys(c.resource_limits)))])
}

violations contains msg if {
	some k, v in requested
	c.resource_limits[k]
	not is_number(v)
	msg := sprintf("requested resource %s must be a number, not %s", [k, lib.type_name(v)])
}

violations contains msg if {
	some k, v in requested
	c.resource_limits[k]
	is_number(v)
	v < 0
	msg := sprintf("requested resource %s must not be negative, got %v", [k, v])
}

violations contains msg if {
	some k, v in requested
	limit := c.resource_limits[k]
	is_number(v)
	v > limit
	msg := sprintf("requested resource %s %v exceeds the limit %v", [k, v, limit])
}

violations contains msg if {
	rate_limited
	msg := sprintf("rate limit exceeded: %v requests in %v s, limit %v", [trusted.request_count_1m, c.rate_limits.window_seconds, rate_limit])
}

# Principle thresholds the original reported but never enforced.
violations contains msg if {
	h := assessment("harm_risk_assessment")
	h > c.thresholds.max_harm_risk
	msg := sprintf("harm risk %v exceeds the maximum %v", [h, c.thresholds.max_harm_risk])
}

violations contains msg if {
	b := assessment("benefit_assessment")
	b < c.thresholds.min_benefit
	msg := sprintf("benefit %v is below the minimum %v", [b, c.thresholds.min_benefit])
}

violations contains "overrides the user's preference without consent" if {
	overrides_user
	not user_consented
}

violations contains msg if {
	ctx.affects_protected_groups == true
	f := assessment("fairness_assessment")
	f < c.thresholds.min_fairness_protected_groups
	msg := sprintf("fairness %v for protected groups is below the minimum %v", [f, c.thresholds.min_fairness_protected_groups])
}

violations contains msg if {
	constitutional_score < c.thresholds.constitutional
	msg := sprintf("constitutional principles score %v is below the minimum %v", [constitutional_score, c.thresholds.constitutional])
}
