# Tests for data.acgs.evolution: scoring, routing, violations and the factor breakdown.
package acgs.evolution_test

import data.acgs.evolution

# A plain, well-prepared minor update: the case that must auto-approve.
minor := {
	"agent_id": "agent-7",
	"requested_by": "alice@example.com",
	"type": "minor_update",
	"constitutional_hash": "cdd01ef066bc6cf2",
	"changes": {"code_changes": ["prompts/system.txt"], "lines_changed": 40},
	"rollback_plan": {"procedure": "redeploy the previous image", "tested": true, "automated": true},
	"performance_analysis": {"complexity_delta": 0, "memory_delta": 0, "latency_delta": -0.05, "resource_delta": 0},
}

decide(req) := d if {
	d := evolution.decision with input as req
}

with_change(req, ops) := json.patch(req, ops)

test_plain_minor_update_auto_approves if {
	d := decide(minor)
	d.approval_type == "auto_approve"
	d.reviewers_required == 0
	d.evolution_score >= 0.95
	d.evolution_score == 0.97
	d.risk_score == 0.1
	d.risk_level == "low"
	d.violations == []
	d.factors == [{"name": "base_risk", "contribution": 0.1, "detail": "base risk of change type minor_update"}]
	d.conditions == ["post_deployment_monitoring", "rollback_ready"]
	d.constitutional_hash == "cdd01ef066bc6cf2"
}

# The original formula gave 0.905 here: the constitutional sub-score could not exceed 0.8.
test_score_components_add_up if {
	d := decide(minor)
	d.score_components.risk == {"score": 0.9, "weight": 0.3, "contribution": 0.27}
	d.score_components.rollback == {"score": 1, "weight": 0.2, "contribution": 0.2}
	round(sum([c.contribution | some c in d.score_components]) * 10000) == round(d.evolution_score * 10000)
}

test_patch_auto_approves_and_configuration_is_fast_tracked if {
	decide(json.patch(minor, [{"op": "replace", "path": "/type", "value": "patch"}])).approval_type == "auto_approve"
	d := decide(json.patch(minor, [{"op": "replace", "path": "/type", "value": "configuration"}]))
	d.approval_type == "fast_track"
	d.reviewers_required == 1
	d.evolution_score == 0.94
}

test_feature_addition_needs_human_review if {
	d := decide(json.patch(minor, [{"op": "replace", "path": "/type", "value": "feature_addition"}]))
	d.approval_type == "human_review"
	d.reviewers_required == 2
	d.risk_level == "medium"
}

test_major_changes_always_need_human_review if {
	every t in ["major_update", "architecture_change"] {
		req := json.patch(minor, [
			{"op": "replace", "path": "/type", "value": t},
			{"op": "add", "path": "/mitigations", "value": {"sandbox_deployment": true, "gradual_rollout": true, "canary": true, "enhanced_monitoring": true, "tests": true}},
		])
		d := decide(req)
		d.approval_type == "human_review"
		d.reviewers_required == 2
		sprintf("change type %s always requires human review", [t]) in d.reasons
	}
}

test_major_change_without_rollback_plan_is_rejected if {
	req := json.patch(minor, [{"op": "replace", "path": "/type", "value": "architecture_change"}, {"op": "remove", "path": "/rollback_plan"}])
	d := decide(req)
	d.approval_type == "rejected"
	d.reviewers_required == 0
	d.violations == ["change type architecture_change requires a rollback plan (procedure or steps)"]
	d.conditions == []
}

test_unknown_type_has_base_risk_0_5 if {
	d := decide(json.patch(minor, [{"op": "replace", "path": "/type", "value": "prompt_tuning"}]))
	d.factors[0] == {"name": "base_risk", "contribution": 0.5, "detail": "base risk of an unknown change type"}
	d.risk_score == 0.5
	d.approval_type == "human_review"
}

test_each_risk_factor_blocks_auto_approval if {
	cases := [
		{"op": "add", "path": "/changes/external_dependencies", "value": ["requests==2.32"]},
		{"op": "add", "path": "/changes/external_dependencies", "value": true},
		{"op": "add", "path": "/changes/network_changes", "value": true},
		{"op": "add", "path": "/changes/experimental_features", "value": true},
		{"op": "replace", "path": "/changes/lines_changed", "value": 501},
	]
	every op in cases {
		d := decide(json.patch(minor, [op]))
		d.approval_type != "auto_approve"
		count(d.factors) == 2
		d.factors[1].contribution > 0
	}
}

test_risk_factor_with_mitigations_is_fast_tracked_not_auto_approved if {
	req := json.patch(minor, [
		{"op": "add", "path": "/changes/network_changes", "value": true},
		{"op": "add", "path": "/mitigations", "value": {"sandbox_deployment": true, "canary": true, "tests": true}},
	])
	d := decide(req)
	d.risk_score == 0.05
	d.evolution_score == 0.985
	d.approval_type == "fast_track"
	"risk factors present (network_changes): auto-approval requires none" in d.reasons
	d.conditions == ["canary", "post_deployment_monitoring", "rollback_ready", "sandbox_deployment", "tests"]
	[f.name | some f in d.factors] == ["base_risk", "network_changes", "canary", "sandbox_deployment", "tests"]
}

test_factors_add_up_to_the_risk_score_with_clamping if {
	req := json.patch(minor, [{"op": "add", "path": "/mitigations", "value": {"sandbox_deployment": true, "gradual_rollout": true}}])
	d := decide(req)
	d.risk_score == 0
	d.factors[count(d.factors) - 1] == {"name": "clamp", "contribution": 0.25, "detail": "risk clamped to [0, 1]"}
	sum([f.contribution | some f in d.factors]) == d.risk_score
	high := decide(json.patch(minor, [
		{"op": "replace", "path": "/type", "value": "feature_addition"},
		{"op": "add", "path": "/changes/experimental_features", "value": true},
		{"op": "add", "path": "/changes/network_changes", "value": true},
	]))
	high.risk_score == 1
	high.risk_level == "critical"
	round(sum([f.contribution | some f in high.factors]) * 10000) == 10000
}

test_privilege_escalation_needs_a_justification if {
	req := json.patch(minor, [{"op": "add", "path": "/changes/privilege_escalation", "value": true}])
	d := decide(req)
	d.approval_type == "rejected"
	d.violations == ["privilege escalation requires a justification"]
	justified := decide(json.patch(req, [{"op": "add", "path": "/justification", "value": "needs to read the shared cache"}]))
	justified.approval_type == "human_review"
	justified.risk_score == 0.7
	justified.risk_level == "high"
}

test_prohibited_changes_are_rejected if {
	every flag, what in data.acgs.constitution.evolution.constitutional.prohibited_changes {
		d := decide(json.patch(minor, [{"op": "add", "path": sprintf("/changes/%s", [flag]), "value": true}]))
		d.approval_type == "rejected"
		sprintf("the change %s", [what]) in d.violations
	}
}

test_affected_principles_lower_the_constitutional_score if {
	d := decide(json.patch(minor, [{"op": "add", "path": "/changes/decision_logic_changes", "value": true}]))
	d.score_components.constitutional.score == 0.9
	d.evolution_score == 0.94
	d.approval_type == "fast_track"
	"the change affects the principle transparency" in d.reasons
}

test_performance_regression_lowers_the_score if {
	d := decide(json.patch(minor, [{"op": "replace", "path": "/performance_analysis/memory_delta", "value": 0.3}]))
	d.score_components.performance.score == 0.75
	d.approval_type == "fast_track"
	"performance_analysis.memory_delta 0.3 exceeds the maximum 0.2" in d.reasons
}

test_rollback_quality_matters if {
	untested := decide(json.patch(minor, [{"op": "replace", "path": "/rollback_plan/tested", "value": false}]))
	untested.score_components.rollback.score == 0.7
	untested.approval_type == "fast_track"
	"rollback plan is not tested" in untested.reasons
	manual := decide(json.patch(minor, [{"op": "replace", "path": "/rollback_plan", "value": {"steps": ["stop", "restore"], "tested": true}}]))
	manual.score_components.rollback.score == 0.8
	"rollback plan is not automated" in manual.reasons
	none := decide(json.patch(minor, [{"op": "remove", "path": "/rollback_plan"}]))
	none.score_components.rollback.score == 0
	none.approval_type == "human_review"
	"no rollback plan" in none.reasons
	empty := decide(json.patch(minor, [{"op": "replace", "path": "/rollback_plan", "value": {"procedure": "", "tested": true, "automated": true}}]))
	empty.score_components.rollback.score == 0
}

test_hash_is_required if {
	d := decide(json.patch(minor, [{"op": "remove", "path": "/constitutional_hash"}]))
	d.approval_type == "rejected"
	d.violations == ["constitutional_hash is missing"]
	other := decide(json.patch(minor, [{"op": "replace", "path": "/constitutional_hash", "value": "abc"}]))
	other.violations == ["constitutional_hash abc does not match this constitution's cdd01ef066bc6cf2"]
}

test_identity_fields_are_required if {
	d := decide(json.patch(minor, [{"op": "remove", "path": "/agent_id"}, {"op": "replace", "path": "/requested_by", "value": ""}, {"op": "remove", "path": "/type"}]))
	d.approval_type == "rejected"
	d.violations == ["agent_id must be a non-empty string", "requested_by must be a non-empty string", "type is missing"]
}

test_malformed_fields_are_rejected_with_reasons if {
	cases := [
		[{"op": "replace", "path": "/changes", "value": []}, "changes must be of type object, not array"],
		[{"op": "replace", "path": "/changes/lines_changed", "value": "40"}, "changes.lines_changed must be of type number, not string"],
		[{"op": "replace", "path": "/changes/lines_changed", "value": -4}, "changes.lines_changed must not be negative, got -4"],
		[{"op": "add", "path": "/changes/external_dependencies", "value": "requests"}, "changes.external_dependencies must be an array or a boolean, not string"],
		[{"op": "replace", "path": "/rollback_plan/tested", "value": "yes"}, "rollback_plan.tested must be of type boolean, not string"],
		[{"op": "replace", "path": "/performance_analysis/latency_delta", "value": null}, "performance_analysis.latency_delta must be of type number, not null"],
		[{"op": "add", "path": "/mitigations", "value": {"canary": "on"}}, "mitigations.canary must be a boolean, not string"],
		[{"op": "replace", "path": "/type", "value": 3}, "type must be of type string, not number"],
	]
	every case in cases {
		d := decide(json.patch(minor, [case[0]]))
		d.approval_type == "rejected"
		case[1] in d.violations
	}
}

test_unknown_mitigations_are_reported_not_counted if {
	d := decide(json.patch(minor, [{"op": "add", "path": "/mitigations", "value": {"prayer": true}}]))
	d.risk_score == 0.1
	"mitigation prayer is not recognised and was not counted" in d.reasons
}

test_non_object_input_is_rejected if {
	every bad in [null, "minor_update", [minor], 0] {
		d := decide(bad)
		d.approval_type == "rejected"
		d.violations == ["input must be a JSON object"]
	}
	evolution.decision.approval_type == "rejected"
}

test_requests_past_the_per_minute_limit_are_rejected if {
	limit := data.acgs.constitution.rate_limits.per_minute.evolution
	d := decide(json.patch(minor, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": limit + 1}}]))
	d.approval_type == "rejected"
	sprintf("rate limit exceeded: %v requests in 60 s, limit %v", [limit + 1, limit]) in d.violations
	decide(json.patch(minor, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": limit}}])).approval_type != "rejected"
	decide(json.patch(minor, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": "9999"}}])).approval_type != "rejected"
}
