# Tests for data.acgs.main: the seed flow, every hard rule, malformed input, scoring.
package acgs.main_test

import data.acgs.main

hash := data.acgs.constitution.constitutional_hash

# The seed's documented example, with its resources inside the limits.
seed := {
	"type": "constitutional_evaluation",
	"constitutional_hash": "cdd01ef066bc6cf2",
	"action": "data.read_public",
	"context": {
		"environment": {"sandbox_enabled": true, "audit_enabled": true, "isolation_level": "strict"},
		"agent": {
			"trust_level": 0.9,
			"requested_resources": {"cpu_cores": 2, "memory_gb": 4, "disk_gb": 10, "network_mbps": 10},
			"capabilities": ["data_read", "compute_analysis"],
		},
		"responsible_party": "user@example.com",
		"explanation": "Reading public dataset for analysis",
		"urgency": "normal",
		"session_id": "sess_123456",
	},
}

# input with the value at path replaced (path must exist up to its parent).
with_value(path, value) := json.patch(seed, [{"op": "add", "path": concat("/", array.concat([""], path)), "value": value}])

without(path) := json.patch(seed, [{"op": "remove", "path": concat("/", array.concat([""], path))}])

decide(req) := d if {
	d := main.decision with input as req
}

allow_of(req) := a if {
	a := main.allow with input as req
}

denied_with(req, reason) if {
	d := decide(req)
	d.allow == false
	reason in d.reasons
}

test_seed_flow_is_allowed_at_0_96 if {
	d := decide(seed)
	d == {
		"allow": true,
		"compliance_score": 0.96,
		"reasons": ["compliance score 0.96 meets the threshold 0.95"],
		"conditions": ["audit_logging", "resource_limits", "sandbox_execution"],
		"evaluation_details": {
			"safety": 1,
			"constitutional": {
				"score": 0.9,
				"principles": {
					"accountability": 1,
					"autonomy": 1,
					"beneficence": 0.5,
					"fairness": 1,
					"non_maleficence": 1,
				},
			},
			"resources": 1,
			"transparency": 1,
		},
		"constitutional_hash": "cdd01ef066bc6cf2",
	}
	main.allow with input as seed
}

# The original API document's own example asks for 100 Mbps against the 10 Mbps limit.
# Decided: a hard deny naming the resource, whatever the score.
test_documented_example_with_100_mbps_is_denied if {
	req := with_value(["context", "agent", "requested_resources", "network_mbps"], 100)
	d := decide(req)
	d.allow == false
	"requested resource network_mbps 100 exceeds the limit 10" in d.reasons
	d.compliance_score == 0.915
	d.evaluation_details.resources == 0.775
	d.conditions == []
	not main.allow with input as req
}

test_resource_above_limit_denies_even_with_a_perfect_score if {
	req := json.patch(seed, [
		{"op": "add", "path": "/context/benefit_assessment", "value": 1},
		{"op": "add", "path": "/context/agent/requested_resources/execution_time_seconds", "value": 301},
	])
	d := decide(req)
	d.allow == false
	d.compliance_score >= 0.95
	d.reasons == ["requested resource execution_time_seconds 301 exceeds the limit 300"]
}

test_every_limit_is_enforced if {
	every k, limit in data.acgs.constitution.resource_limits {
		denied_with(
			with_value(["context", "agent", "requested_resources", k], limit + 1),
			sprintf("requested resource %s %v exceeds the limit %v", [k, limit + 1, limit]),
		)
	}
}

test_the_original_misnamed_limit_key_is_refused if {
	denied_with(
		with_value(["context", "agent", "requested_resources", "network_bandwidth_mbps"], 1),
		"unknown resource network_bandwidth_mbps (known: cpu_cores, disk_gb, execution_time_seconds, memory_gb, network_mbps)",
	)
}

test_resource_values_must_be_non_negative_numbers if {
	denied_with(
		with_value(["context", "agent", "requested_resources", "cpu_cores"], "2"),
		"requested resource cpu_cores must be a number, not string",
	)
	denied_with(
		with_value(["context", "agent", "requested_resources", "cpu_cores"], -1),
		"requested resource cpu_cores must not be negative, got -1",
	)
}

test_trust_below_threshold_denies if {
	denied_with(with_value(["context", "agent", "trust_level"], 0.79), "trust level 0.79 is below the minimum 0.8")
	decide(with_value(["context", "agent", "trust_level"], 0.8)).allow
}

test_trust_missing_or_out_of_range_denies if {
	denied_with(without(["context", "agent", "trust_level"]), "context.agent.trust_level is missing")
	denied_with(with_value(["context", "agent", "trust_level"], 1.5), "context.agent.trust_level must be within [0, 1], got 1.5")
	denied_with(with_value(["context", "agent", "trust_level"], "high"), "context.agent.trust_level must be of type number, not string")
}

test_every_dangerous_action_denies_with_a_fixed_decision if {
	every a in data.acgs.constitution.dangerous_actions {
		decide(with_value(["action"], a)) == {
			"allow": false,
			"compliance_score": 0,
			"reasons": [sprintf("action %s is dangerous and always denied", [a])],
			"conditions": [],
			"evaluation_details": main.zero_details,
			"constitutional_hash": hash,
		}
	}
}

test_critical_pattern_in_explanation_denies if {
	denied_with(
		with_value(["context", "explanation"], "Cleaning up with RM -RF / afterwards"),
		"explanation contains the critical safety pattern: rm -rf /",
	)
}

test_critical_pattern_in_code_denies if {
	denied_with(
		with_value(["context", "code"], "import os\nos.system('cat /etc/shadow')"),
		"code contains the critical safety pattern: /etc/shadow",
	)
}

test_clean_code_is_allowed if {
	decide(with_value(["context", "code"], "print(sum(range(10)))")).allow
}

test_critical_pattern_in_action_denies if {
	denied_with(
		with_value(["action"], "network.ddos_attack_v2"),
		"action network.ddos_attack_v2 matches the critical safety pattern network.ddos_attack",
	)
	denied_with(
		with_value(["action"], "tool.run:insmod evil.ko"),
		"action contains the critical safety pattern: insmod ",
	)
}

# Only A-Z are folded: a dotless or dotted capital I does not become an ASCII "i".
test_pattern_match_folds_ascii_only if {
	decide(with_value(["context", "explanation"], "load \u0130NSMOD module")).allow
	not decide(with_value(["context", "explanation"], "load INSMOD module")).allow
}

test_rate_limit_from_trusted_context_denies if {
	req := json.patch(seed, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": 101}}])
	denied_with(req, "rate limit exceeded: 101 requests in 60 s, limit 100")
	decide(json.patch(seed, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": 100}}])).allow
}

# The client's own usage figure (the original's current_usage_count) has no effect.
test_client_usage_count_is_ignored if {
	decide(with_value(["context", "current_usage_count"], 100000)) == decide(seed)
}

test_malformed_trusted_context_denies if {
	denied_with(
		json.patch(seed, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": "5"}}]),
		"trusted.request_count_1m must be of type number, not string",
	)
	denied_with(
		json.patch(seed, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": -1}}]),
		"trusted.request_count_1m must not be negative, got -1",
	)
	denied_with(json.patch(seed, [{"op": "add", "path": "/trusted", "value": 7}]), "trusted must be of type object, not number")
}

test_missing_hash_denies if {
	denied_with(without(["constitutional_hash"]), "constitutional_hash is missing")
}

test_other_hash_denies if {
	denied_with(
		with_value(["constitutional_hash"], "0000000000000000"),
		"constitutional_hash 0000000000000000 does not match this constitution's cdd01ef066bc6cf2",
	)
}

test_non_object_input_denies if {
	every bad in [null, 1, "data.read_public", [seed], true] {
		decide(bad) == {
			"allow": false,
			"compliance_score": 0,
			"reasons": ["input must be a JSON object"],
			"conditions": [],
			"evaluation_details": main.zero_details,
			"constitutional_hash": hash,
		}
	}
}

test_missing_input_denies if {
	not main.allow
	main.decision.reasons == ["input must be a JSON object"]
}

test_action_must_be_a_non_empty_string if {
	denied_with(without(["action"]), "action is missing")
	denied_with(with_value(["action"], ""), "action must be a non-empty string")
	denied_with(with_value(["action"], ["data.read_public"]), "action must be a non-empty string")
}

test_unknown_request_type_denies if {
	denied_with(
		with_value(["type"], "anything"),
		"type anything is not one of: action_authorization, constitutional_evaluation, data_access, evolution_approval",
	)
	decide(without(["type"])) == decide(seed)
}

test_wrong_types_deny_with_a_reason if {
	cases := [
		[["context"], "ctx", "context must be of type object, not string"],
		[["context", "environment"], [], "context.environment must be of type object, not array"],
		[["context", "environment", "sandbox_enabled"], "true", "context.environment.sandbox_enabled must be of type boolean, not string"],
		[["context", "environment", "audit_enabled"], 1, "context.environment.audit_enabled must be of type boolean, not number"],
		[["context", "agent"], null, "context.agent must be of type object, not null"],
		[["context", "agent", "requested_resources"], [1], "context.agent.requested_resources must be of type object, not array"],
		[["context", "responsible_party"], {"name": "x"}, "context.responsible_party must be of type string, not object"],
		[["context", "explanation"], 5, "context.explanation must be of type string, not number"],
		[["context", "code"], false, "context.code must be of type string, not boolean"],
		[["context", "benefit_assessment"], "1", "context.benefit_assessment must be of type number, not string"],
		[["context", "overrides_user_preference"], "no", "context.overrides_user_preference must be of type boolean, not string"],
		[["context", "user_consent"], 1, "context.user_consent must be of type boolean, not number"],
		[["context", "affects_protected_groups"], null, "context.affects_protected_groups must be of type boolean, not null"],
	]
	every case in cases {
		denied_with(with_value(case[0], case[1]), case[2])
	}
}

test_sandbox_off_lowers_the_score_below_threshold if {
	d := decide(with_value(["context", "environment", "sandbox_enabled"], false))
	d.allow == false
	d.compliance_score == 0.87
	d.evaluation_details.safety == 0.7
	"sandbox is not enabled" in d.reasons
	"compliance score 0.87 is below the threshold 0.95" in d.reasons
}

test_audit_off_lowers_accountability_and_transparency if {
	d := decide(without(["context", "environment", "audit_enabled"]))
	d.allow == false
	d.evaluation_details.transparency == 0.8
	d.evaluation_details.constitutional.principles.accountability == 0.5
	d.compliance_score == 0.9
	"audit is not enabled" in d.reasons
	"constitutional principles score 0.8 is below the minimum 0.9" in d.reasons
}

test_no_responsible_party_is_a_finding if {
	d := decide(with_value(["context", "responsible_party"], ""))
	d.allow == false
	"no responsible party is named" in d.reasons
}

test_high_benefit_offsets_a_missing_responsible_party if {
	req := json.patch(without(["context", "responsible_party"]), [{"op": "add", "path": "/context/benefit_assessment", "value": 1}])
	d := decide(req)
	d.allow
	d.compliance_score == 0.96
	"no responsible party is named" in d.reasons
}

test_explanation_required_actions_need_50_characters if {
	short := with_value(["action"], "data.process_personal")
	d := decide(short)
	d.allow == false
	d.evaluation_details.transparency == 0.8
	"action data.process_personal requires an explanation of at least 50 characters" in d.reasons
	long := json.patch(short, [
		{"op": "add", "path": "/context/explanation", "value": "Aggregating consented survey answers into anonymous statistics"},
		{"op": "add", "path": "/context/benefit_assessment", "value": 0.9},
	])
	ok := decide(long)
	ok.allow
	ok.compliance_score == 0.992
	ok.conditions == ["audit_logging", "enhanced_monitoring", "resource_limits", "sandbox_execution"]
}

test_user_override_with_consent_scores_0_8 if {
	req := json.patch(seed, [
		{"op": "add", "path": "/context/overrides_user_preference", "value": true},
		{"op": "add", "path": "/context/user_consent", "value": true},
		{"op": "add", "path": "/context/benefit_assessment", "value": 1},
	])
	d := decide(req)
	d.evaluation_details.constitutional.principles.autonomy == 0.8
	d.allow
}

test_user_override_without_consent_denies if {
	req := with_value(["context", "overrides_user_preference"], true)
	denied_with(req, "overrides the user's preference without consent")
	decide(req).evaluation_details.constitutional.principles.autonomy == 0.2
}

test_harm_benefit_and_fairness_thresholds_deny if {
	denied_with(with_value(["context", "harm_risk_assessment"], 0.3), "harm risk 0.3 exceeds the maximum 0.2")
	denied_with(with_value(["context", "benefit_assessment"], 0.2), "benefit 0.2 is below the minimum 0.3")
	denied_with(with_value(["context", "benefit_assessment"], 2), "context.benefit_assessment must be within [0, 1], got 2")
	req := json.patch(seed, [
		{"op": "add", "path": "/context/affects_protected_groups", "value": true},
		{"op": "add", "path": "/context/fairness_assessment", "value": 0.85},
	])
	denied_with(req, "fairness 0.85 for protected groups is below the minimum 0.9")
}

test_sub_scores_stay_within_bounds if {
	req := json.patch(seed, [
		{"op": "add", "path": "/context/agent/requested_resources", "value": {"cpu_cores": 200, "memory_gb": 0}},
		{"op": "add", "path": "/context/harm_risk_assessment", "value": 1},
	])
	d := decide(req)
	every v in [d.evaluation_details.safety, d.evaluation_details.resources, d.evaluation_details.transparency, d.evaluation_details.constitutional.score, d.compliance_score] {
		v >= 0
		v <= 1
	}
	d.evaluation_details.resources == 0.505
}

test_no_requested_resources_scores_full if {
	decide(without(["context", "agent", "requested_resources"])) == decide(seed)
}

test_reasons_and_conditions_are_sorted if {
	d := decide(json.patch(seed, [
		{"op": "add", "path": "/context/environment/sandbox_enabled", "value": false},
		{"op": "add", "path": "/context/agent/trust_level", "value": 0.1},
		{"op": "add", "path": "/constitutional_hash", "value": "x"},
	]))
	d.reasons == sort(d.reasons)
	count(d.reasons) == 4
}

test_allow_matches_decision if {
	every req in [seed, without(["constitutional_hash"]), with_value(["action"], "data.exfiltrate")] {
		allow_of(req) == decide(req).allow
	}
}

# ---------------------------------------------------------------------------
# Names: one canonical form, one grammar, one catalogue.

test_dangerous_actions_are_denied_in_every_spelling if {
	every spelt in ["DATA.EXFILTRATE", " data.exfiltrate\t", "Data.Exfiltrate\n"] {
		d := decide(with_value(["action"], spelt))
		d.allow == false
		d.compliance_score == 0
		d.reasons == ["action data.exfiltrate is dangerous and always denied"]
	}
}

test_names_outside_the_grammar_are_refused if {
	msg := "action is not a valid action name: dot-separated segments of the characters abcdefghijklmnopqrstuvwxyz0123456789_., at most 128 characters"
	every spelt in [
		"data.exfiltrate\u200b", # zero-width space
		"d\u0430ta.read_public", # Cyrillic a
		"\uff44ata.exfiltrate", # full-width d
		"networ\u212a.raw_socket", # Kelvin sign
		"data..read_public",
		".data.read_public",
		"data.read_public.",
		".",
		"data.read-public",
		"data.read_public\u0000",
		"   ",
		concat("", [c | some _ in numbers.range(1, 129); c := "a"]),
	] {
		denied_with(with_value(["action"], spelt), msg)
	}
}

test_unknown_actions_are_never_allowed if {
	denied_with(with_value(["action"], "report.other"), "action report.other is not in the constitution's action catalogue")
	denied_with(with_value(["action"], "data.read_public.v2"), "action data.read_public.v2 is not in the constitution's action catalogue")
}

test_catalogued_actions_in_other_case_are_matched_canonically if {
	d := decide(with_value(["action"], " Data.Read_Public "))
	d.allow == true
	d.conditions == ["audit_logging", "resource_limits", "sandbox_execution"]
	e := decide(with_value(["action"], "DATA.ANALYZE_PRIVATE"))
	e.allow == true
}

# ---------------------------------------------------------------------------
# Trust: the registry's level (trusted.agent, set by the service) caps the claim.

test_a_claim_cannot_raise_the_registered_trust if {
	req := json.patch(seed, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": 1, "agent": {"trust_level": 0.5}}}])
	denied_with(req, "trust level 0.5 is below the minimum 0.8")
}

test_a_claim_can_lower_the_registered_trust if {
	req := json.patch(seed, [
		{"op": "add", "path": "/trusted", "value": {"request_count_1m": 1, "agent": {"trust_level": 1}}},
		{"op": "replace", "path": "/context/agent/trust_level", "value": 0.6},
	])
	denied_with(req, "trust level 0.6 is below the minimum 0.8")
}

test_the_registered_trust_stands_without_a_claim if {
	req := json.patch(seed, [
		{"op": "add", "path": "/trusted", "value": {"request_count_1m": 1, "agent": {"trust_level": 0.9}}},
		{"op": "remove", "path": "/context/agent/trust_level"},
	])
	decide(req).allow == true
	no_registry := json.patch(req, [{"op": "remove", "path": "/trusted/agent"}])
	denied_with(no_registry, "context.agent.trust_level is missing")
}

test_a_malformed_registry_record_denies if {
	denied_with(json.patch(seed, [{"op": "add", "path": "/trusted", "value": {"agent": 7}}]), "trusted.agent must be of type object, not number")
	denied_with(json.patch(seed, [{"op": "add", "path": "/trusted", "value": {"agent": {"trust_level": 2}}}]), "trusted.agent.trust_level must be within [0, 1], got 2")
}
