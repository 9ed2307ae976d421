# Helpers shared by the ACGS constitution's packages (acgs.main, acgs.evolution,
# acgs.sandbox, acgs.fast_path). Nothing here reads input directly.
package acgs.lib

c := data.acgs.constitution

# A rule rather than an inline call: OPA evaluates a reference passed to a function before
# the negation, so "not is_object(input)" fails outright when there is no input at all,
# while "not input_is_object" holds. The same applies to "not f(input.field)" for an absent
# field; such calls pass object.get(input, "field", null) instead.
input_is_object if is_object(input)

# The value at path inside obj; undefined when the path is absent. The default, a set, is
# no JSON value, so it tells "absent" apart from any present value (false and null included)
# with one traversal.
lookup(obj, path) := v if {
	v := object.get(obj, path, set())
	not is_set(v)
}

present(obj, path) if {
	_ = lookup(obj, path)
}

absent(obj, path) if not present(obj, path)

# JSON type names as they appear in reasons.
type_name(v) := "object" if is_object(v)

type_name(v) := "array" if is_array(v)

type_name(v) := "string" if is_string(v)

type_name(v) := "number" if is_number(v)

type_name(v) := "boolean" if is_boolean(v)

type_name(v) := "null" if is_null(v)

nonempty_string(v) if {
	is_string(v)
	v != ""
}

unit_interval(v) if {
	is_number(v)
	v >= 0
	v <= 1
}

clamp01(x) := min([1, max([0, x])])

# Scores are rounded to a fixed number of decimals so that equal decisions are equal JSON
# whether computed by OPA, by the Wasm build or by the fast path. 1 and 0, the commonest
# scores, are answered without the three decimal operations (the dearest steps in OPA's Wasm);
# the result is the same integer either way.
round_score(x) := 1 if {
	x == 1
} else := 0 if {
	x == 0
} else := round(x * c.scoring.scale) / c.scoring.scale

_ascii_upper_to_lower := {upper(ch): ch | some ch in split("abcdefghijklmnopqrstuvwxyz", "")}

# Only A-Z are mapped. Unicode lowercasing differs between Go (OPA), the Wasm runtime and Rust
# (U+0130 becomes "i" in one and "i" + U+0307 in another), and the fast path re-implements this
# match outside OPA; an ASCII-only mapping is byte-for-byte the same everywhere.
# A string that lower() leaves as it is holds no A-Z and is returned at once: most text is
# already lowercase, and one pass of lower() costs far less in OPA's Wasm than replace_n.
ascii_lower(s) := s if {
	lower(s) == s
} else := strings.replace_n(_ascii_upper_to_lower, s)

# The canonical form of an action name, the only form any list is matched against:
# surrounding ASCII white space trimmed, A-Z lowered (ascii_lower, for the reason given
# there). Any other character stays as it is, so that valid_action_name refuses it.
action_name(a) := ascii_lower(trim(a, " \t\r\n")) if is_string(a)

# A canonical name in the constitution's grammar: at most max_length characters, every one of
# them among the declared characters, dot-separated segments none of which is empty. Control,
# invisible and look-alike characters from other scripts are outside it.
valid_action_name(name) if {
	g := c.action_grammar
	name != ""
	count(name) <= g.max_length
	trim(name, g.characters) == ""

	# No segment is empty: no dot at either end, no two dots in a row.
	not startswith(name, ".")
	not endswith(name, ".")
	not contains(name, "..")
}

# The trust level a policy believes: the claim (agent.trust_level), lowered to the level the
# agent registry holds for the caller (trusted.agent.trust_level, filled in by the service
# from its own records) when there is one. A claim never raises it; without a claim the
# registered level stands. Both arguments are objects ({} when absent).
believed_trust(agent, trusted) := r if {
	t := agent.trust_level
	is_number(t)
	r := trusted.agent.trust_level
	is_number(r)
	r < t
} else := t if {
	t := agent.trust_level
	is_number(t)
} else := r if {
	r := trusted.agent.trust_level
	is_number(r)
}

# Critical text patterns (lowercase) found in s after ASCII lowercasing, sorted.
text_patterns_in(s) := sort([p |
	lowered := ascii_lower(s)
	some p in c.critical_patterns.text
	contains(lowered, p)
])

# Named critical action patterns ("category.name") matched by an action that mentions both
# the category and the name, so "network.ddos_attack_v2" is caught as well. The patterns are
# held by category ({category: [name, ...]}), so a name is looked at only when the action
# mentions its category.
action_patterns_in(action) := sort([concat(".", [category, name]) |
	lowered := ascii_lower(action)
	some category, names in c.critical_patterns.actions
	contains(lowered, category)
	some name in names
	contains(lowered, name)
])

hash_reasons(req) := {"constitutional_hash is missing"} if {
	absent(req, ["constitutional_hash"])
} else := {msg |
	h := req.constitutional_hash
	h != c.constitutional_hash
	msg := sprintf("constitutional_hash %v does not match this constitution's %s", [h, c.constitutional_hash])
}

# Violations for fields present with the wrong JSON type. fields is an array of
# {"path": [...], "type": "<type name>"}; absent fields are left to the caller's defaults.
type_reasons(req, fields) := {msg |
	some f in fields
	v := lookup(req, f.path)
	type_name(v) != f.type
	msg := sprintf("%s must be of type %s, not %s", [concat(".", f.path), f.type, type_name(v)])
}

# Violations for numeric fields present outside [0, 1].
unit_reasons(req, paths) := {msg |
	some path in paths
	v := lookup(req, path)
	is_number(v)
	not unit_interval(v)
	msg := sprintf("%s must be within [0, 1], got %v", [concat(".", path), v])
}

# Violations for numeric fields present below zero.
non_negative_reasons(req, paths) := {msg |
	some path in paths
	v := lookup(req, path)
	is_number(v)
	v < 0
	msg := sprintf("%s must not be negative, got %v", [concat(".", path), v])
}

# The rate rule for calls of one kind (a key of rate_limits.per_minute: "evolution",
# "execute", ...). The service counts calls per principal and reports
# trusted.request_count_1m only once the count passes the limit the constitution declares for
# that kind; without a count (under the limit, or evaluated with no counter) nothing is exceeded.
rate_limit_reasons(req, kind) := {msg |
	n := req.trusted.request_count_1m
	is_number(n)
	limit := c.rate_limits.per_minute[kind]
	n > limit
	msg := sprintf("rate limit exceeded: %v requests in %v s, limit %v", [n, c.rate_limits.window_seconds, limit])
}
