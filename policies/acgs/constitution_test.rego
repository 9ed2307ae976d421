# Checks on the constitution document itself: the invariants the policies rely on.
package acgs.constitution_test

import data.acgs.lib

con := data.acgs.constitution

test_hash_and_limits_are_as_declared if {
	con.constitutional_hash == "cdd01ef066bc6cf2"
	con.resource_limits == {"cpu_cores": 2, "memory_gb": 4, "disk_gb": 10, "network_mbps": 10, "execution_time_seconds": 300}
	con.thresholds.allow == 0.95
	con.thresholds.trust == 0.8
}

test_weights_add_up_to_one if {
	round(sum([w | some w in con.scoring.weights]) * 10000) == 10000
	round(sum([p.weight | some p in con.principles]) * 10000) == 10000
	round(sum([w | some w in con.evolution.weights]) * 10000) == 10000
	round(sum([w | some w in con.scoring.safety]) * 10000) == 10000
	round(sum([w | some w in con.scoring.transparency]) * 10000) == 10000
	round(sum([w | some w in con.scoring.accountability]) * 10000) == 10000
	round(sum([w | some w in con.evolution.rollback]) * 10000) == 10000
}

# Safe actions are served by the fast path, so nothing that reads more of the request may
# apply to them.
test_safe_actions_need_no_explanation_and_match_no_pattern if {
	every a in con.safe_actions {
		not a in con.explanation_required_actions
		lib.text_patterns_in(a) == []
		lib.action_patterns_in(a) == []
	}
}

test_dangerous_actions_are_named_categories if {
	every a in con.dangerous_actions {
		count(split(a, ".")) == 2
	}
}

test_text_patterns_are_lowercase_ascii_and_non_empty if {
	every p in con.critical_patterns.text {
		p != ""
		lib.ascii_lower(p) == p
		regex.match(`^[\x20-\x7e]+$`, p)
	}
}

test_lists_are_sorted_and_unique if {
	every name in ["safe_actions", "dangerous_actions", "explanation_required_actions", "request_types"] {
		con[name] == sort({x | some x in con[name]})
	}
	con.critical_patterns.text == sort({x | some x in con.critical_patterns.text})
	every _, names in con.critical_patterns.actions {
		names == sort({x | some x in names})
	}
}

# Action patterns are held by category: a named category and names, each in the action grammar
# and without a dot, so that "category.name" is the pattern named in a reason.
test_action_patterns_are_categories_of_names if {
	count(con.critical_patterns.actions) > 0
	every category, names in con.critical_patterns.actions {
		lib.valid_action_name(category)
		not contains(category, ".")
		count(names) > 0
		every name in names {
			lib.valid_action_name(name)
			not contains(name, ".")
		}
	}
}

test_sandbox_rules_name_known_runtimes if {
	every t in con.sandbox.trust_tiers {
		t.minimum_runtime in con.sandbox.runtimes
	}
	every _, cls in con.sandbox.classes {
		cls.minimum_runtime in con.sandbox.runtimes
	}
	tiers := [t.min_trust | some t in con.sandbox.trust_tiers]
	tiers == array.reverse(sort(tiers))
	tiers[count(tiers) - 1] == 0
}

test_evolution_routing_is_ordered if {
	con.evolution.routing.auto_approve > con.evolution.routing.fast_track
	every t in con.evolution.human_review_types {
		con.evolution.base_risk[t]
	}
	levels := [l.max | some l in con.evolution.risk_levels]
	levels == sort(levels)
	levels[count(levels) - 1] == 1
}

test_ascii_lower_folds_only_ascii if {
	lib.ascii_lower("RM -RF / \u0130 \u212a Z") == "rm -rf / \u0130 \u212a z"
}
