# Tests of the fast-path contract: requests the contract routes to "allow" or "deny" get a
# decision that depends on input.action alone, and every allow condition matters.
package acgs.fast_path_test

import data.acgs.fast_path
import data.acgs.main
import data.acgs.main_test.seed

con := data.acgs.constitution

fp := con.fast_path

decide(req) := d if {
	d := main.decision with input as req
}

route(req) := r if {
	r := fast_path.route with input as req
}

failed(req) := f if {
	f := fast_path.failed_conditions with input as req
}

patch(req, ops) := json.patch(req, ops)

# Inputs that differ from the seed in every way the conditions leave open.
variants := [
	seed,
	patch(seed, [{"op": "remove", "path": "/type"}]),
	patch(seed, [{"op": "replace", "path": "/type", "value": "data_access"}]),
	patch(seed, [{"op": "replace", "path": "/context/session_id", "value": "sess_other"}]),
	patch(seed, [{"op": "remove", "path": "/context/session_id"}]),
	patch(seed, [{"op": "replace", "path": "/context/explanation", "value": "Ünïcode \u0130 text, no patterns"}]),
	patch(seed, [{"op": "remove", "path": "/context/explanation"}]),
	patch(seed, [{"op": "replace", "path": "/context/agent/trust_level", "value": 0.8}]),
	patch(seed, [{"op": "replace", "path": "/context/agent/trust_level", "value": 1}]),
	patch(seed, [{"op": "remove", "path": "/context/agent/requested_resources"}]),
	patch(seed, [{"op": "replace", "path": "/context/agent/requested_resources", "value": {}}]),
	patch(seed, [{"op": "replace", "path": "/context/agent/requested_resources", "value": {"cpu_cores": 0, "execution_time_seconds": 300}}]),
	patch(seed, [{"op": "replace", "path": "/context/agent/requested_resources", "value": {"cpu_cores": 0.5, "memory_gb": 1.5, "disk_gb": 0, "network_mbps": 9.99, "execution_time_seconds": 12}}]),
	patch(seed, [{"op": "add", "path": "/context/code", "value": "print('hello')"}]),
	patch(seed, [{"op": "add", "path": "/context/overrides_user_preference", "value": false}]),
	patch(seed, [{"op": "add", "path": "/context/user_consent", "value": false}]),
	patch(seed, [{"op": "add", "path": "/context/affects_protected_groups", "value": true}]),
	patch(seed, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": 0}}]),
	patch(seed, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": 100, "source": "limiter"}}]),
	patch(seed, [{"op": "add", "path": "/context/current_usage_count", "value": 99999}]),
	patch(seed, [{"op": "add", "path": "/extra", "value": {"anything": [1, 2, 3]}}]),
	patch(seed, [{"op": "replace", "path": "/context/environment", "value": {"sandbox_enabled": true, "audit_enabled": true}}]),
	patch(seed, [{"op": "replace", "path": "/context/agent/capabilities", "value": "not even an array"}]),
]

test_seed_is_served_by_the_fast_path if {
	route(seed) == "allow"
	failed(seed) == []
	decide(seed).compliance_score == 0.96
}

# Split in small tests: each evaluates a handful of decisions, as opa test's per-test timeout
# is short on a busy machine. tests/test_constitution.py covers thousands of requests more.
same_as_seed(from, to) if {
	expected := decide(seed)
	every v in array.slice(variants, from, to) {
		route(v) == "allow"
		decide(v) == expected
	}
}

test_allow_decision_depends_on_the_action_alone_1 if same_as_seed(0, 6)

test_allow_decision_depends_on_the_action_alone_2 if same_as_seed(6, 12)

test_allow_decision_depends_on_the_action_alone_3 if same_as_seed(12, 18)

test_allow_decision_depends_on_the_action_alone_4 if {
	count(variants) <= 24
	same_as_seed(18, 24)
}

same_per_action(i) if {
	a := fp.allow_actions[i]
	expected := decide(patch(seed, [{"op": "replace", "path": "/action", "value": a}]))
	expected.allow
	every j in [1, 9, 17] {
		req := patch(variants[j], [{"op": "replace", "path": "/action", "value": a}])
		route(req) == "allow"
		decide(req) == expected
	}
}

test_allow_decision_is_the_same_per_action if {
	count(fp.allow_actions) == 4
	same_per_action(0)
}

test_allow_decision_is_the_same_per_action_1 if same_per_action(1)

test_allow_decision_is_the_same_per_action_2 if same_per_action(2)

test_allow_decision_is_the_same_per_action_3 if same_per_action(3)

# The decision never echoes free input fields.
test_allow_decision_echoes_no_input if {
	d := decide(seed)
	not contains(json.marshal(d), "sess_123456")
	not contains(json.marshal(d), "user@example.com")
	not contains(json.marshal(d), "Reading public")
}

deny_fixed(from, to) if {
	noise := [
		seed,
		{},
		{"action": "x"},
		patch(seed, [{"op": "remove", "path": "/constitutional_hash"}]),
		patch(seed, [{"op": "replace", "path": "/constitutional_hash", "value": 42}]),
		patch(seed, [{"op": "replace", "path": "/context", "value": "garbage"}]),
		patch(seed, [{"op": "replace", "path": "/context/agent/trust_level", "value": 0}]),
		patch(seed, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": 1000000}}]),
	]
	every a in array.slice(fp.deny_actions, from, to) {
		expected := decide({"action": a})
		expected.allow == false
		every n in noise {
			req := object.union(n, {"action": a})
			route(req) == "deny"
			decide(req) == expected
		}
	}
}

test_deny_decision_depends_on_the_action_alone_1 if deny_fixed(0, 5)

test_deny_decision_depends_on_the_action_alone_2 if deny_fixed(5, 10)

test_deny_decision_depends_on_the_action_alone_3 if {
	count(fp.deny_actions) <= 15
	deny_fixed(10, 15)
}

# One input per allow condition that breaks that condition only and changes the decision.
# Keyed by the condition's path (for any_of, the path of its first leaf).
breaking := {
	"constitutional_hash": patch(seed, [{"op": "replace", "path": "/constitutional_hash", "value": "ffffffffffffffff"}]),
	"type": patch(seed, [{"op": "replace", "path": "/type", "value": "bogus"}]),
	"context.environment.sandbox_enabled": patch(seed, [{"op": "replace", "path": "/context/environment/sandbox_enabled", "value": false}]),
	"context.environment.audit_enabled": patch(seed, [{"op": "replace", "path": "/context/environment/audit_enabled", "value": false}]),
	"context.agent.trust_level>=": patch(seed, [{"op": "replace", "path": "/context/agent/trust_level", "value": 0.7}]),
	"context.agent.trust_level<=": patch(seed, [{"op": "replace", "path": "/context/agent/trust_level", "value": 1.2}]),
	"context.agent.requested_resources": patch(seed, [{"op": "add", "path": "/context/agent/requested_resources/gpu_count", "value": 1}]),
	"context.agent.requested_resources.cpu_cores": patch(seed, [{"op": "replace", "path": "/context/agent/requested_resources/cpu_cores", "value": 3}]),
	"context.agent.requested_resources.disk_gb": patch(seed, [{"op": "replace", "path": "/context/agent/requested_resources/disk_gb", "value": -1}]),
	"context.agent.requested_resources.execution_time_seconds": patch(seed, [{"op": "add", "path": "/context/agent/requested_resources/execution_time_seconds", "value": "300"}]),
	"context.agent.requested_resources.memory_gb": patch(seed, [{"op": "replace", "path": "/context/agent/requested_resources/memory_gb", "value": 4.5}]),
	"context.agent.requested_resources.network_mbps": patch(seed, [{"op": "replace", "path": "/context/agent/requested_resources/network_mbps", "value": 100}]),
	"context.responsible_party": patch(seed, [{"op": "replace", "path": "/context/responsible_party", "value": ""}]),
	"context.explanation": patch(seed, [{"op": "replace", "path": "/context/explanation", "value": "then run: curl x | SH"}]),
	"context.code": patch(seed, [{"op": "add", "path": "/context/code", "value": "open('/dev/mem')"}]),
	"context.benefit_assessment": patch(seed, [{"op": "add", "path": "/context/benefit_assessment", "value": 1}]),
	"context.harm_risk_assessment": patch(seed, [{"op": "add", "path": "/context/harm_risk_assessment", "value": 0.1}]),
	"context.fairness_assessment": patch(seed, [{"op": "add", "path": "/context/fairness_assessment", "value": 0.95}]),
	"context.overrides_user_preference": patch(seed, [{"op": "add", "path": "/context/overrides_user_preference", "value": true}]),
	"context.user_consent": patch(seed, [{"op": "add", "path": "/context/user_consent", "value": "yes"}]),
	"context.affects_protected_groups": patch(seed, [{"op": "add", "path": "/context/affects_protected_groups", "value": 1}]),
	"trusted": patch(seed, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": 101}}]),
	"trusted.agent": patch(seed, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": 1, "agent": {"trust_level": 0.5}}}]),
}

cond_key(cond) := concat("", [concat(".", cond.path), object.get({"gte": ">=", "lte": "<="}, cond.op, "")]) if {
	cond.op != "any_of"
} else := concat(".", cond.value[0][0].path)

test_every_condition_has_a_breaking_input if {
	keys := {cond_key(cond) | some cond in fp.allow_conditions}
	count(keys) == count(fp.allow_conditions)
	keys == {k | some k, _ in breaking}
}

breaks_only(from, to) if {
	seed_decision := decide(seed)
	every cond in array.slice(fp.allow_conditions, from, to) {
		req := breaking[cond_key(cond)]
		failed(req) == [cond]
		route(req) == "full"
		decide(req) != seed_decision
	}
}

test_breaking_one_condition_leaves_the_fast_path_and_changes_the_decision_1 if breaks_only(0, 6)

test_breaking_one_condition_leaves_the_fast_path_and_changes_the_decision_2 if breaks_only(6, 12)

test_breaking_one_condition_leaves_the_fast_path_and_changes_the_decision_3 if breaks_only(12, 18)

test_breaking_one_condition_leaves_the_fast_path_and_changes_the_decision_4 if breaks_only(18, 24)

test_breaking_one_condition_leaves_the_fast_path_and_changes_the_decision_5 if {
	count(fp.allow_conditions) <= 30
	breaks_only(24, 30)
}

test_ops_hold_as_documented if {
	route(patch(seed, [{"op": "replace", "path": "/context/agent", "value": []}])) == "full"
	route(patch(seed, [{"op": "replace", "path": "/context/agent/requested_resources", "value": "none"}])) == "full"
	route(patch(seed, [{"op": "replace", "path": "/context/agent/trust_level", "value": "0.9"}])) == "full"
	route(patch(seed, [{"op": "replace", "path": "/context/environment/sandbox_enabled", "value": 1}])) == "full"
	route(patch(seed, [{"op": "add", "path": "/trusted", "value": {"note": 1}}])) == "full"
	route(patch(seed, [{"op": "add", "path": "/trusted", "value": {"principal": {"id": "a"}}}])) == "allow"
	route(patch(seed, [{"op": "add", "path": "/trusted", "value": 5}])) == "full"
	route(patch(seed, [{"op": "replace", "path": "/context/explanation", "value": null}])) == "full"
	route(patch(seed, [{"op": "replace", "path": "/action", "value": "report.other"}])) == "full"
	route(["data.read_public"]) == "full"
}

# ---------------------------------------------------------------------------
# The contract is the constitution's own data, not a second copy of the rules.

test_action_lists_are_the_constitution_lists if {
	fp.deny_actions == con.dangerous_actions
	fp.allow_actions == con.safe_actions
	count({a | some a in con.safe_actions} & {a | some a in con.dangerous_actions}) == 0
}

test_allow_conditions_are_derived_from_the_constitution if {
	limits := con.resource_limits
	patterns := con.critical_patterns.text
	expected := array.concat(
		array.concat(
			[
				{"path": ["constitutional_hash"], "op": "eq", "value": con.constitutional_hash},
				any_of([[absent(["type"])], [{"path": ["type"], "op": "in", "value": con.request_types}]]),
				{"path": ["context", "environment", "sandbox_enabled"], "op": "eq", "value": true},
				{"path": ["context", "environment", "audit_enabled"], "op": "eq", "value": true},
				{"path": ["context", "agent", "trust_level"], "op": "gte", "value": con.thresholds.trust},
				{"path": ["context", "agent", "trust_level"], "op": "lte", "value": 1},
				any_of([
					[absent(["context", "agent", "requested_resources"])],
					[{"path": ["context", "agent", "requested_resources"], "op": "keys_subset", "value": sort(object.keys(limits))}],
				]),
			],
			[cond |
				some k in sort(object.keys(limits))
				p := ["context", "agent", "requested_resources", k]
				cond := any_of([[absent(p)], [{"path": p, "op": "gte", "value": 0}, {"path": p, "op": "lte", "value": limits[k]}]])
			],
		),
		[
			{"path": ["context", "responsible_party"], "op": "nonempty_string"},
			any_of([[absent(["context", "explanation"])], [{"path": ["context", "explanation"], "op": "not_contains_any", "value": patterns}]]),
			any_of([[absent(["context", "code"])], [{"path": ["context", "code"], "op": "not_contains_any", "value": patterns}]]),
			absent(["context", "benefit_assessment"]),
			absent(["context", "harm_risk_assessment"]),
			absent(["context", "fairness_assessment"]),
			any_of([[absent(["context", "overrides_user_preference"])], [{"path": ["context", "overrides_user_preference"], "op": "eq", "value": false}]]),
			any_of([[absent(["context", "user_consent"])], [{"path": ["context", "user_consent"], "op": "is_bool"}]]),
			any_of([[absent(["context", "affects_protected_groups"])], [{"path": ["context", "affects_protected_groups"], "op": "is_bool"}]]),
			any_of([
				[absent(["trusted"])],
				[{"path": ["trusted"], "op": "keys_subset", "value": ["agent", "principal"]}],
				[
					{"path": ["trusted", "request_count_1m"], "op": "gte", "value": 0},
					{"path": ["trusted", "request_count_1m"], "op": "lte", "value": con.rate_limits.per_minute.decision},
				],
			]),
			any_of([
				[absent(["trusted", "agent"])],
				[
					{"path": ["trusted", "agent", "trust_level"], "op": "gte", "value": con.thresholds.trust},
					{"path": ["trusted", "agent", "trust_level"], "op": "lte", "value": 1},
				],
			]),
		],
	)
	fp.allow_conditions == expected
}

absent(path) := {"path": path, "op": "absent"}

any_of(branches) := {"op": "any_of", "value": branches}

test_only_documented_ops_are_used if {
	documented := {op | some op, _ in fp.ops}
	leaves := [leaf |
		some cond in fp.allow_conditions
		cond.op == "any_of"
		some branch in cond.value
		some leaf in branch
	]
	used := {cond.op | some cond in fp.allow_conditions} | {leaf.op | some leaf in leaves}
	count(used - documented) == 0
	every leaf in leaves {
		leaf.op != "any_of"
	}
}

# Ops the current conditions do not use still hold as documented.
test_type_ops if {
	doc := {"n": 1.5, "s": "", "b": false, "o": {"k": null}}
	every cond in [
		{"path": ["n"], "op": "is_number"},
		{"path": ["s"], "op": "is_string"},
		{"path": ["b"], "op": "is_bool"},
		{"path": ["o", "k"], "op": "eq", "value": null},
		{"path": ["o"], "op": "keys_subset", "value": ["k", "j"]},
		{"path": ["n"], "op": "in", "value": [1, 1.5]},
		{"path": ["o", "k", "deeper"], "op": "absent"},
		{"path": ["s", "x"], "op": "absent"},
	] {
		fast_path.holds(cond) with input as doc
	}
	every cond in [
		{"path": ["s"], "op": "is_number"},
		{"path": ["n"], "op": "is_string"},
		{"path": ["s"], "op": "nonempty_string"},
		{"path": ["o", "k"], "op": "absent"},
		{"path": ["o"], "op": "keys_subset", "value": ["j"]},
		{"path": ["missing"], "op": "is_string"},
	] {
		not fast_path.holds(cond) with input as doc
	}
}

# The witness lets the partial evaluator compute each allow decision at load: any input
# satisfying the conditions gets the same decision, so the witness with the action will do.
test_witness_satisfies_the_conditions_and_decides_like_the_seed if {
	every a in fp.allow_actions {
		req := object.union(fp.allow_witness, {"action": a})
		route(req) == "allow"
		decide(req) == decide(object.union(seed, {"action": a}))
	}
}
