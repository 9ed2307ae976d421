# ACGS evolution approval: may this agent change itself, and who must look first?
#
# Entry point: data.acgs.evolution.decision, used by the evolution service (port 8002).
# The risk model (base risk per change type, risk factors, mitigations, the weights of the
# total and the routing thresholds) is data at data.acgs.constitution.evolution.
#
# Input: agent_id, requested_by, type, constitutional_hash, justification,
#   changes{external_dependencies (array or boolean), privilege_escalation, network_changes,
#     experimental_features, lines_changed, user_interaction_changes, decision_logic_changes,
#     data_handling_changes, logging_disabled, audit_disabled, data_encryption_weakened},
#   rollback_plan{procedure | steps, tested, automated},
#   performance_analysis{complexity_delta, memory_delta, latency_delta, resource_delta},
#   mitigations{sandbox_deployment, gradual_rollout, canary, enhanced_monitoring, tests};
#   trusted{principal, agent, request_count_1m} (filled by the service, never the client).
#
# Routing: any violation -> rejected; major_update and architecture_change -> human_review;
# otherwise evolution_score >= 0.95 with no risk factor -> auto_approve, >= 0.90 ->
# fast_track (one reviewer), below -> human_review (two reviewers).
package acgs.evolution

import data.acgs.lib

c := data.acgs.constitution

m := c.evolution

decision := {
	"approval_type": "rejected",
	"reviewers_required": m.reviewers.rejected,
	"risk_score": 1,
	"risk_level": "critical",
	"evolution_score": 0,
	"reasons": ["input must be a JSON object"],
	"conditions": [],
	"violations": ["input must be a JSON object"],
	"factors": [],
	"score_components": {},
	"constitutional_hash": c.constitutional_hash,
} if {
	not lib.input_is_object
} else := {
	"approval_type": approval_type,
	"reviewers_required": m.reviewers[approval_type],
	"risk_score": risk_score,
	"risk_level": risk_level,
	"evolution_score": evolution_score,
	"reasons": sort(violations | notes),
	"conditions": conditions,
	"violations": sort(violations),
	"factors": factors,
	"score_components": score_components,
	"constitutional_hash": c.constitutional_hash,
}

# ---------------------------------------------------------------------------
# Views of the request

changes := input.changes if {
	is_object(input.changes)
} else := {}

plan := input.rollback_plan if {
	is_object(input.rollback_plan)
} else := {}

perf := input.performance_analysis if {
	is_object(input.performance_analysis)
} else := {}

mitigations := input.mitigations if {
	is_object(input.mitigations)
} else := {}

change_type := input.type

base_risk := m.base_risk[change_type] if {
	is_string(change_type)
} else := m.unknown_type_risk

# ---------------------------------------------------------------------------
# Risk: base risk + factors - mitigations, clamped to [0, 1].

active_risk_factors contains "external_dependencies" if changes.external_dependencies == true

active_risk_factors contains "external_dependencies" if {
	is_array(changes.external_dependencies)
	count(changes.external_dependencies) > 0
}

active_risk_factors contains name if {
	some name in ["privilege_escalation", "network_changes", "experimental_features"]
	changes[name] == true
}

active_risk_factors contains "large_change" if {
	n := changes.lines_changed
	is_number(n)
	n > m.risk_factors.large_change.lines_threshold
}

active_mitigations contains name if {
	some name, _ in m.mitigations
	mitigations[name] == true
}

risk_factor_entries := [e |
	some name in sort(active_risk_factors)
	spec := m.risk_factors[name]
	e := {"name": name, "contribution": spec.weight, "detail": spec.detail}
]

mitigation_entries := [e |
	some name in sort(active_mitigations)
	spec := m.mitigations[name]
	e := {"name": name, "contribution": 0 - spec.weight, "detail": spec.detail}
]

base_entry := {"name": "base_risk", "contribution": base_risk, "detail": sprintf("base risk of change type %v", [change_type])} if {
	is_string(change_type)
	m.base_risk[change_type]
} else := {"name": "base_risk", "contribution": base_risk, "detail": "base risk of an unknown change type"}

risk_raw := sum([e.contribution | some e in array.concat([base_entry], array.concat(risk_factor_entries, mitigation_entries))])

risk_clamped := lib.clamp01(risk_raw)

# Compared after rounding: OPA sums in binary floating point, the Wasm build in decimal, and
# 0.4 - 0.2 - 0.15 - 0.05 must not need a clamp in one and not the other.
clamp_entries := [] if {
	lib.round_score(risk_clamped) == lib.round_score(risk_raw)
} else := [{"name": "clamp", "contribution": lib.round_score(risk_clamped - risk_raw), "detail": "risk clamped to [0, 1]"}]

# Each entry's contribution to risk_score; they add up to it.
factors := array.concat(array.concat([base_entry], risk_factor_entries), array.concat(mitigation_entries, clamp_entries))

risk_score := lib.round_score(risk_clamped)

risk_level := [l.level | some l in m.risk_levels; risk_score <= l.max][0]

# ---------------------------------------------------------------------------
# Sub-scores and the total

affected_principles := sort([p | some flag, p in m.constitutional.principle_changes; changes[flag] == true])

constitutional_score := lib.clamp01(1 - (m.constitutional.per_affected_principle * count(affected_principles)))

performance_scores := [x |
	some name in sort(object.keys(m.performance_max_delta))
	x := lib.clamp01(1 - (max([delta(name), 0]) / m.performance_max_delta[name]))
]

delta(name) := perf[name] if {
	is_number(perf[name])
} else := 0

performance_score := sum(performance_scores) / count(performance_scores)

has_rollback_plan if lib.nonempty_string(plan.procedure)

has_rollback_plan if {
	is_array(plan.steps)
	count(plan.steps) > 0
}

rollback_tested if {
	has_rollback_plan
	plan.tested == true
}

rollback_automated if {
	has_rollback_plan
	plan.automated == true
}

rollback_score := sum([plan_credit, tested_credit, automated_credit])

plan_credit := m.rollback.plan if {
	has_rollback_plan
} else := 0

tested_credit := m.rollback.tested if {
	rollback_tested
} else := 0

automated_credit := m.rollback.automated if {
	rollback_automated
} else := 0

component_scores := {
	"risk": 1 - risk_clamped,
	"constitutional": constitutional_score,
	"performance": performance_score,
	"rollback": rollback_score,
}

score_components := {name: entry |
	some name, w in m.weights
	entry := {
		"score": lib.round_score(component_scores[name]),
		"weight": w,
		"contribution": lib.round_score(w * component_scores[name]),
	}
}

evolution_score := lib.round_score(sum([x | some name, w in m.weights; x := w * component_scores[name]]))

# ---------------------------------------------------------------------------
# Routing

approval_type := "rejected" if {
	count(violations) > 0
} else := "human_review" if {
	change_type in m.human_review_types
} else := "auto_approve" if {
	evolution_score >= m.routing.auto_approve
	count(active_risk_factors) == 0
} else := "fast_track" if {
	evolution_score >= m.routing.fast_track
} else := "human_review"

conditions := [] if {
	approval_type == "rejected"
} else := sort(array.concat(m.obligations, [x | some x in sort(active_mitigations)]))

notes contains msg if {
	approval_type != "rejected"
	msg := sprintf("evolution score %v routes to %s", [evolution_score, approval_type])
}

notes contains msg if {
	approval_type == "human_review"
	change_type in m.human_review_types
	msg := sprintf("change type %v always requires human review", [change_type])
}

notes contains msg if {
	approval_type == "fast_track"
	evolution_score >= m.routing.auto_approve
	msg := sprintf("risk factors present (%s): auto-approval requires none", [concat(", ", sort(active_risk_factors))])
}

notes contains msg if {
	some name, limit in m.performance_max_delta
	d := delta(name)
	d > limit
	msg := sprintf("performance_analysis.%s %v exceeds the maximum %v", [name, d, limit])
}

notes contains "no rollback plan" if not has_rollback_plan

notes contains "rollback plan is not tested" if {
	has_rollback_plan
	not rollback_tested
}

notes contains "rollback plan is not automated" if {
	has_rollback_plan
	not rollback_automated
}

notes contains msg if {
	some p in affected_principles
	msg := sprintf("the change affects the principle %s", [p])
}

notes contains msg if {
	some name, _ in mitigations
	not m.mitigations[name]
	msg := sprintf("mitigation %s is not recognised and was not counted", [name])
}

# ---------------------------------------------------------------------------
# Violations: any one rejects the request outright.

typed_fields := [
	{"path": ["agent_id"], "type": "string"},
	{"path": ["requested_by"], "type": "string"},
	{"path": ["type"], "type": "string"},
	{"path": ["justification"], "type": "string"},
	{"path": ["changes"], "type": "object"},
	{"path": ["changes", "privilege_escalation"], "type": "boolean"},
	{"path": ["changes", "network_changes"], "type": "boolean"},
	{"path": ["changes", "experimental_features"], "type": "boolean"},
	{"path": ["changes", "lines_changed"], "type": "number"},
	{"path": ["changes", "user_interaction_changes"], "type": "boolean"},
	{"path": ["changes", "decision_logic_changes"], "type": "boolean"},
	{"path": ["changes", "data_handling_changes"], "type": "boolean"},
	{"path": ["changes", "logging_disabled"], "type": "boolean"},
	{"path": ["changes", "audit_disabled"], "type": "boolean"},
	{"path": ["changes", "data_encryption_weakened"], "type": "boolean"},
	{"path": ["rollback_plan"], "type": "object"},
	{"path": ["rollback_plan", "procedure"], "type": "string"},
	{"path": ["rollback_plan", "steps"], "type": "array"},
	{"path": ["rollback_plan", "tested"], "type": "boolean"},
	{"path": ["rollback_plan", "automated"], "type": "boolean"},
	{"path": ["performance_analysis"], "type": "object"},
	{"path": ["performance_analysis", "complexity_delta"], "type": "number"},
	{"path": ["performance_analysis", "memory_delta"], "type": "number"},
	{"path": ["performance_analysis", "latency_delta"], "type": "number"},
	{"path": ["performance_analysis", "resource_delta"], "type": "number"},
	{"path": ["mitigations"], "type": "object"},
]

violations contains msg if some msg in lib.hash_reasons(input)

violations contains msg if some msg in lib.type_reasons(input, typed_fields)

violations contains msg if some msg in lib.non_negative_reasons(input, [["changes", "lines_changed"]])

# The constitution's per-minute limit on change requests (rate_limits.per_minute.evolution),
# read from the count the service puts in input.trusted.
violations contains msg if some msg in lib.rate_limit_reasons(input, "evolution")

violations contains msg if {
	v := changes.external_dependencies
	not is_array(v)
	not is_boolean(v)
	msg := sprintf("changes.external_dependencies must be an array or a boolean, not %s", [lib.type_name(v)])
}

violations contains msg if {
	some name, v in mitigations
	not is_boolean(v)
	msg := sprintf("mitigations.%s must be a boolean, not %s", [name, lib.type_name(v)])
}

violations contains msg if {
	some field in ["agent_id", "requested_by"]
	not lib.nonempty_string(object.get(input, field, null))
	msg := sprintf("%s must be a non-empty string", [field])
}

violations contains "type is missing" if lib.absent(input, ["type"])

violations contains msg if {
	some flag, what in m.constitutional.prohibited_changes
	changes[flag] == true
	msg := sprintf("the change %s", [what])
}

violations contains "privilege escalation requires a justification" if {
	changes.privilege_escalation == true
	not lib.nonempty_string(object.get(input, "justification", null))
}

violations contains msg if {
	change_type in m.rollback_required_types
	not has_rollback_plan
	msg := sprintf("change type %v requires a rollback plan (procedure or steps)", [change_type])
}
