# Reference semantics of the fast-path contract in data.acgs.constitution.fast_path.
#
# ACGS's partial evaluator (Rust) decides some requests from the constitution's data alone;
# this package states in Rego which requests those are, so opa tests and the differential
# test can check the Rust implementation against it. Entry point: data.acgs.fast_path.route,
# one of "deny" (the action is in deny_actions), "allow" (the action is in allow_actions and
# every allow condition holds) or "full" (evaluate data.acgs.main.decision).
package acgs.fast_path

import data.acgs.lib

fp := data.acgs.constitution.fast_path

route := "deny" if {
	is_object(input)
	input.action in fp.deny_actions
} else := "allow" if {
	is_object(input)
	input.action in fp.allow_actions
	allow_conditions_hold
} else := "full"

allow_conditions_hold if {
	every cond in fp.allow_conditions {
		holds(cond)
	}
}

# Conditions of allow_conditions that input does not satisfy (for tests and diagnostics).
failed_conditions := [cond | some cond in fp.allow_conditions; not holds(cond)]

holds(cond) if {
	cond.op == "any_of"
	some branch in cond.value
	every leaf in branch {
		leaf_holds(leaf)
	}
}

holds(cond) if {
	cond.op != "any_of"
	leaf_holds(cond)
}

leaf_holds(cond) if {
	cond.op == "absent"
	lib.absent(input, cond.path)
}

leaf_holds(cond) if {
	cond.op == "eq"
	lib.lookup(input, cond.path) == cond.value
}

leaf_holds(cond) if {
	cond.op == "gte"
	v := lib.lookup(input, cond.path)
	is_number(v)
	v >= cond.value
}

leaf_holds(cond) if {
	cond.op == "lte"
	v := lib.lookup(input, cond.path)
	is_number(v)
	v <= cond.value
}

leaf_holds(cond) if {
	cond.op == "nonempty_string"
	lib.nonempty_string(lib.lookup(input, cond.path))
}

leaf_holds(cond) if {
	cond.op == "in"
	lib.lookup(input, cond.path) in cond.value
}

leaf_holds(cond) if {
	cond.op == "is_number"
	is_number(lib.lookup(input, cond.path))
}

leaf_holds(cond) if {
	cond.op == "is_bool"
	is_boolean(lib.lookup(input, cond.path))
}

leaf_holds(cond) if {
	cond.op == "is_string"
	is_string(lib.lookup(input, cond.path))
}

leaf_holds(cond) if {
	cond.op == "keys_subset"
	v := lib.lookup(input, cond.path)
	is_object(v)
	every k, _ in v {
		k in cond.value
	}
}

leaf_holds(cond) if {
	cond.op == "not_contains_any"
	v := lib.lookup(input, cond.path)
	is_string(v)
	lowered := lib.ascii_lower(v)
	every p in cond.value {
		not contains(lowered, p)
	}
}
