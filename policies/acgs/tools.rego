# ACGS tool calls: may this agent call this tool with these arguments now, and on what terms?
#
# Entry point: data.acgs.tools.decision, asked by acgs.Guard (in-process or through the
# policy service) before every guarded tool call. The tools are data, at
# data.acgs.constitution.tools: a catalogue by canonical name (risk, outcome, labels, callers,
# argument constraints, approval, conditions), the default for tools not in it, and rules over
# the session's earlier calls. Changing the catalogue needs no change here.
#
# Input: tool (required: the name the agent called, matched in its canonical form), arguments
#   (an object; absent = {}), agent_id (required), agent.trust_level (a claim: it only lowers
#   the registered level, see lib.believed_trust), session{id, history[{tool, outcome, labels}]}
#   (the embedding guard's record of the session's earlier calls, oldest first), constitutional_hash
#   (optional; a wrong one is a deny), trusted{principal{id, roles}, agent{trust_level},
#   session{id, history, principal_history}} (the services' facts; absent in embedded use).
#   Through the policy service trusted.session carries the service's own record: history, the
#   session's earlier calls, and principal_history, the caller's (principal's) last calls
#   across all its sessions and calls naming none, both oldest first, each at most
#   tools.history_max entries; the history the request sends is ignored.
#
# Session rules (tools.session_rules) read the history their scope names: "session" the
#   session's own; "principal" (the default, and any other value) principal_history when the
#   trusted member carries one, else the session's. So through the service an agent cannot shed
#   what it read by naming a new session (or none); embedded, both read session.history.
#
# Output: always {outcome, allow, tool, known, risk, reasons, labels, conditions, approval,
#   constitutional_hash}. Any violation is a deny (reasons: every violation); else the tool's
#   outcome require_approval, or an argument above its approve_above limit, asks for approval
#   (reasons: why); else allow. An unknown tool is never allowed.
package acgs.tools

import data.acgs.lib

c := data.acgs.constitution

t := c.tools

decision := {
	"outcome": "deny",
	"allow": false,
	"tool": null,
	"known": false,
	"risk": t.default.risk,
	"reasons": ["input must be a JSON object"],
	"labels": [],
	"conditions": {"sandbox": false, "redact_arguments": false},
	"approval": null,
	"constitutional_hash": c.constitutional_hash,
} if {
	not lib.input_is_object
} else := {
	"outcome": outcome,
	"allow": outcome == "allow",
	"tool": tool_field,
	"known": known,
	"risk": entry.risk,
	"reasons": reasons,
	"labels": labels,
	"conditions": {"sandbox": flag("sandbox"), "redact_arguments": flag("redact_arguments")},
	"approval": approval,
	"constitutional_hash": c.constitutional_hash,
}

outcome := "deny" if {
	count(violations) > 0
} else := "require_approval" if {
	count(approval_reasons) > 0
} else := "allow"

reasons := sort(violations) if {
	outcome == "deny"
} else := sort(approval_reasons) if {
	outcome == "require_approval"
} else := [sprintf("tool %s is allowed with these arguments", [name])]

approval := object.get(entry, "approval", t.default.approval) if {
	outcome == "require_approval"
} else := null

# ---------------------------------------------------------------------------
# The tool: its canonical name, and its catalogue entry (one lookup) or the default.

# Undefined unless input.tool is a string.
name := lib.action_name(input.tool)

tool_field := name if {
	is_string(name)
} else := null

# The name in the tool-name grammar: segments of name_grammar.characters joined by its
# separators, none empty, at most max_length characters. String operations rather than a
# regular expression: a pattern is compiled afresh in every Wasm evaluation.
valid_name if {
	count(name) <= t.name_grammar.max_length
	dotted := strings.replace_n(separators_to_dots, name)
	trim(dotted, concat("", [t.name_grammar.characters, "."])) == ""
	nonempty_segments(dotted)
}

separators_to_dots := {s: "." | some s in t.name_grammar.separators}

# No segment of a dotted name is empty: no dot at either end, no two dots in a row.
nonempty_segments(dotted) if {
	dotted != ""
	not startswith(dotted, ".")
	not endswith(dotted, ".")
	not contains(dotted, "..")
}

catalogued := t.catalogue[name] if valid_name

default known := false

known if catalogued

entry := catalogued if {
	known
} else := t.default

labels := sort({l | some l in object.get(entry, "labels", [])})

flag(key) if entry[key] == true

default flag(_) := false

# ---------------------------------------------------------------------------
# Views of the request

arguments := input.arguments if {
	is_object(input.arguments)
} else := {}

agent := input.agent if {
	is_object(input.agent)
} else := {}

trusted := input.trusted if {
	is_object(input.trusted)
} else := {}

session := input.session if {
	is_object(input.session)
} else := {}

# Whose record of the session's earlier calls counts: the services' (trusted.session, which
# the policy service always fills for this decision) when there is one, else the request's own
# (embedded use, where the embedding guard keeps it).
history_source := {"name": "trusted.session.history", "history": trusted.session.history} if {
	is_object(trusted.session)
	lib.present(trusted.session, ["history"])
} else := {"name": "session.history", "history": session.history} if {
	lib.present(session, ["history"])
}

# The principal's calls across its sessions: only ever the services' record.
principal_source := {"name": "trusted.session.principal_history", "history": trusted.session.principal_history} if {
	is_object(trusted.session)
	lib.present(trusted.session, ["principal_history"])
}

history_sources contains history_source

history_sources contains principal_source

# The records that are well formed, by name: one scan of each serves the check (a malformed
# record is a violation of its own) and the session rules (which never read one).
well_formed_histories contains source.name if {
	some source in history_sources
	is_array(source.history)
	count(source.history) <= t.history_max
	every h in source.history {
		is_object(h)
		is_array(object.get(h, "labels", []))
	}
}

# The session's earlier calls, once their record is well formed; [] otherwise.
history := history_source.history if {
	history_source.name in well_formed_histories
} else := []

# The principal's earlier calls across its sessions; the session's where no service gives
# them; [] when malformed.
principal_history := principal_source.history if {
	principal_source.name in well_formed_histories
} else := history if {
	not principal_source
} else := []

# The history a session rule reads.
rule_history(rule) := history if {
	rule.scope == "session"
} else := principal_history

# The outcomes of earlier calls that may have run: allowed, approved, and still waiting for
# approval (the service may never learn that reviewers rejected one, so it counts until settled).
possibly_run := {"allow", "approved", "require_approval"}

# Who is calling: the authenticated principal when the service set one, else the agent_id the
# embedding guard passed.
caller_id := trusted.principal.id if {
	is_string(trusted.principal.id)
} else := input.agent_id

caller_roles := {r | some r in trusted.principal.roles} if {
	is_array(trusted.principal.roles)
} else := set()

trust := lib.believed_trust(agent, trusted)

# ---------------------------------------------------------------------------
# Violations (each a deny)

typed_fields := [
	{"path": ["tool"], "type": "string"},
	{"path": ["arguments"], "type": "object"},
	{"path": ["agent_id"], "type": "string"},
	{"path": ["agent"], "type": "object"},
	{"path": ["agent", "trust_level"], "type": "number"},
	{"path": ["session"], "type": "object"},
	{"path": ["session", "id"], "type": "string"},
	{"path": ["session", "history"], "type": "array"},
	{"path": ["constitutional_hash"], "type": "string"},
	{"path": ["trusted"], "type": "object"},
	{"path": ["trusted", "principal"], "type": "object"},
	{"path": ["trusted", "principal", "id"], "type": "string"},
	{"path": ["trusted", "principal", "roles"], "type": "array"},
	{"path": ["trusted", "agent"], "type": "object"},
	{"path": ["trusted", "agent", "trust_level"], "type": "number"},
	{"path": ["trusted", "session"], "type": "object"},
	{"path": ["trusted", "session", "id"], "type": "string"},
	{"path": ["trusted", "session", "history"], "type": "array"},
	{"path": ["trusted", "session", "principal_history"], "type": "array"},
]

violations contains msg if some msg in lib.type_reasons(input, typed_fields)

violations contains msg if some msg in lib.unit_reasons(input, [["agent", "trust_level"], ["trusted", "agent", "trust_level"]])

violations contains msg if {
	lib.present(input, ["constitutional_hash"])
	some msg in lib.hash_reasons(input)
}

violations contains "tool is required" if lib.absent(input, ["tool"])

violations contains "agent_id must be a non-empty string" if not lib.nonempty_string(object.get(input, "agent_id", null))

violations contains msg if {
	is_string(name)
	not valid_name
	msg := sprintf(
		"tool name %s is not in the tool-name grammar (segments of a-z 0-9 _ - separated by '.', '/' or ':', at most %v characters)",
		[display_name, t.name_grammar.max_length],
	)
}

# At most 64 characters of a rejected name are echoed.
display_name := name if {
	count(name) <= 64
} else := concat("", [substring(name, 0, 64), "..."])

violations contains msg if {
	entry.outcome == "deny"
	known
	msg := sprintf("tool %s is denied by the constitution", [name])
}

violations contains msg if {
	entry.outcome == "deny"
	not known
	valid_name
	msg := sprintf("tool %s is not in the catalogue, and unknown tools are denied", [name])
}

violations contains msg if {
	known
	not entry.outcome in {"allow", "deny", "require_approval"}
	msg := sprintf("tool %s has no valid outcome in the catalogue", [name])
}

# ---- Sessions

violations contains msg if {
	some source in history_sources
	is_array(source.history)
	count(source.history) > t.history_max
	msg := sprintf("%s has %v entries, more than the %v allowed", [source.name, count(source.history), t.history_max])
}

violations contains msg if {
	some source in history_sources
	is_array(source.history)
	count(source.history) <= t.history_max
	not source.name in well_formed_histories
	msg := sprintf("%s entries must be objects with an array of labels", [source.name])
}

# A history is scanned only for a rule the call's labels bring into play.
violations contains msg if {
	some rule in t.session_rules
	carries_any(labels, rule.deny_labels)
	earlier := [h.tool |
		some h in rule_history(rule)
		h.outcome in possibly_run
		carries_any(h.labels, rule.after_labels)
	]
	count(earlier) > 0
	msg := sprintf("session rule %s: %s (earlier call: %v)", [rule.name, rule.reason, earlier[0]])
}

carries_any(have, wanted) if {
	some l in wanted
	l in have
}

# ---- Callers

callers := entry.callers if {
	known
	is_object(entry.callers)
} else := {}

violations contains msg if {
	min_trust := callers.min_trust
	not trust_at_least(min_trust)
	msg := sprintf("tool %s needs a caller trust level of at least %v, the caller has %v", [name, min_trust, shown_trust])
}

trust_at_least(min_trust) if {
	is_number(trust)
	trust >= min_trust
}

shown_trust := trust if {
	is_number(trust)
} else := "none"

violations contains msg if {
	agents := callers.agents
	not caller_id in agents
	msg := sprintf("tool %s may only be called by the agents: %s", [name, concat(", ", [sprintf("%v", [a]) | some a in agents])])
}

violations contains msg if {
	roles := callers.roles
	not carries_any(caller_roles, roles)
	msg := sprintf("tool %s needs a caller with one of the roles: %s", [name, concat(", ", [sprintf("%v", [r]) | some r in roles])])
}

# ---- Arguments: each constraint of the catalogue entry, on the argument it names.

specs := entry.arguments if {
	known
	is_object(entry.arguments)
} else := {}

violations contains msg if {
	some arg, spec in specs
	spec.required == true
	lib.absent(arguments, [arg])
	msg := sprintf("argument %s is required", [arg])
}

violations contains msg if {
	some arg, spec in specs
	v := arguments[arg]
	lib.type_name(v) != spec.type
	msg := sprintf("argument %s must be of type %s, not %s", [arg, spec.type, lib.type_name(v)])
}

violations contains msg if {
	some arg, spec in specs
	v := arguments[arg]
	some msg in constraint_reasons(arg, spec, v)
}

# The argument's value as a reason shows it: never when the tool's arguments are redacted,
# strings cut to 64 characters.
shown(v) := "(redacted)" if {
	flag("redact_arguments")
} else := concat("", [substring(v, 0, 64), "..."]) if {
	is_string(v)
	count(v) > 64
} else := v

constraint_reasons(arg, spec, v) := (((((({msg |
	is_array(spec.prefixes)
	not under_prefix(v, spec.prefixes)
	msg := sprintf("argument %s %v is not under any of: %s", [arg, shown(v), concat(", ", spec.prefixes)])
} | {msg |
	is_array(spec.globs)
	not matches_glob(v, spec.globs)
	msg := sprintf("argument %s %v matches none of: %s", [arg, shown(v), concat(", ", spec.globs)])
}) | {msg |
	is_array(spec.deny_globs)
	some g in spec.deny_globs
	is_string(v)
	glob_matches(g, v)
	msg := sprintf("argument %s %v matches the forbidden pattern %s", [arg, shown(v), g])
}) | {msg |
	is_array(spec.hosts)
	some msg in host_reasons(arg, spec.hosts, v)
}) | {msg |
	lib.present(spec, ["min"])
	not number_at_least(v, spec.min)
	msg := sprintf("argument %s %v is below the minimum %v", [arg, shown(v), spec.min])
}) | {msg |
	lib.present(spec, ["max"])
	not number_at_most(v, spec.max)
	msg := sprintf("argument %s %v is above the maximum %v", [arg, shown(v), spec.max])
}) | {msg |
	is_array(spec.enum)
	not v in spec.enum
	msg := sprintf("argument %s %v is not one of: %s", [arg, shown(v), concat(", ", [sprintf("%v", [e]) | some e in spec.enum])])
}) | {msg |
	is_string(spec.pattern)
	not matches_pattern(v, spec.pattern)
	msg := sprintf("argument %s %v does not match the pattern %s", [arg, shown(v), spec.pattern])
}

# A string under one of the prefixes, with no ".." segment (which could climb out of it).
under_prefix(v, prefixes) if {
	is_string(v)
	not ".." in split(v, "/")
	some p in prefixes
	startswith(v, p)
}

matches_glob(v, globs) if {
	is_string(v)
	some g in globs
	glob_matches(g, v)
}

# glob.match(g, ["/"], v) for a string v. A pattern is compiled afresh in every Wasm
# evaluation, which costs far more than the rest of a decision, so the commonest shapes of a
# path glob, "**/L", "**/L/**", "**/*L" and "**/L*" with a literal L, are matched with string
# operations to the same effect ("**" spans separators, "*" does not); any other pattern goes
# to glob.match. policies/acgs/tools_test.rego and tests/test_tools_policy.py hold both to the
# same answers.
glob_matches(g, v) if {
	[op, arg] := glob_shape(g)
	shape_matches(op, arg, v)
}

glob_matches(g, v) if {
	not glob_shape(g)
	glob.match(g, ["/"], v)
}

glob_shape(g) := ["suffix", concat("", ["/", rest])] if {
	startswith(g, "**/")
	rest := substring(g, 3, -1)
	rest != ""
	glob_literal(rest)
} else := ["contains", concat("", ["/", mid, "/"])] if {
	startswith(g, "**/")
	endswith(g, "/**")
	count(g) > 6
	mid := substring(g, 3, count(g) - 6)
	glob_literal(mid)
} else := ["last_suffix", rest] if {
	startswith(g, "**/*")
	rest := substring(g, 4, -1)
	glob_literal(rest)
	not contains(rest, "/")
} else := ["last_prefix", head] if {
	startswith(g, "**/")
	endswith(g, "*")
	count(g) > 4
	head := substring(g, 3, count(g) - 4)
	glob_literal(head)
	not contains(head, "/")
}

glob_literal(s) if not glob_special(s)

glob_special(s) if {
	some ch in ["*", "?", "[", "]", "{", "}", ",", "\\"]
	contains(s, ch)
}

shape_matches("suffix", arg, v) if endswith(v, arg)

shape_matches("contains", arg, v) if contains(v, arg)

shape_matches("last_suffix", arg, v) if endswith(last_segment(v), arg)

shape_matches("last_prefix", arg, v) if startswith(last_segment(v), arg)

# The part after the last "/"; undefined when there is none.
last_segment(v) := segments[count(segments) - 1] if {
	segments := split(v, "/")
	count(segments) > 1
}

matches_pattern(v, pattern) if {
	is_string(v)
	regex.match(pattern, v)
}

number_at_least(v, bound) if {
	is_number(v)
	v >= bound
}

number_at_most(v, bound) if {
	is_number(v)
	v <= bound
}

# ---- URL hosts: scheme://host[:port][/?#...], with a host of plain DNS labels. User info,
# back slashes, IP literals, percent-encoding and empty labels are refused rather than
# interpreted, since URL parsers disagree on them. String operations rather than regular
# expressions, for the reason given at valid_name.
url_scheme_characters := "abcdefghijklmnopqrstuvwxyz0123456789+.-"

host_characters := "abcdefghijklmnopqrstuvwxyz0123456789-."

host_reasons(arg, hosts, v) := {sprintf("argument %s must be a URL", [arg])} if {
	not is_string(v)
} else := {sprintf("argument %s %v is not an absolute URL with a host", [arg, shown(v)])} if {
	not url_authority(v)
} else := {sprintf("argument %s %v has a host ACGS does not accept (user info, IP literal or other characters)", [arg, shown(v)])} if {
	not url_host(v)
} else := {msg |
	host := url_host(v)
	not host_allowed(host, hosts)
	msg := sprintf("argument %s: host %s is not one of: %s", [arg, host, concat(", ", hosts)])
}

# The authority of an absolute URL (lowercased): what follows "scheme://" up to the first
# "/", "?" or "#"; undefined when v does not start with a scheme and "://".
url_authority(v) := authority if {
	lowered := lib.ascii_lower(v)
	scheme := split(lowered, "://")[0]
	scheme != lowered
	scheme != ""
	indexof("abcdefghijklmnopqrstuvwxyz", substring(scheme, 0, 1)) >= 0
	trim(scheme, url_scheme_characters) == ""
	rest := substring(lowered, count(scheme) + 3, -1)
	authority := split(split(split(rest, "/")[0], "?")[0], "#")[0]
}

# The host of a URL whose authority is host[:port] with DNS labels of a-z 0-9 - (none empty,
# none starting or ending with "-") and a port of 1 to 5 digits; undefined otherwise.
url_host(v) := host if {
	parts := split(url_authority(v), ":")
	count(parts) <= 2
	host := parts[0]
	trim(host, host_characters) == ""
	nonempty_segments(host)
	not startswith(host, "-")
	not endswith(host, "-")
	not contains(host, ".-")
	not contains(host, "-.")
	valid_port(parts)
}

valid_port(parts) if count(parts) == 1

valid_port(parts) if {
	port := parts[1]
	count(port) >= 1
	count(port) <= 5
	trim(port, "0123456789") == ""
}

host_allowed(host, hosts) if host in hosts

host_allowed(host, hosts) if {
	some h in hosts
	startswith(h, "*.")
	endswith(host, substring(h, 1, -1))
}

# ---------------------------------------------------------------------------
# Approval

approval_reasons contains msg if {
	entry.outcome == "require_approval"
	known
	msg := sprintf("tool %s requires approval", [name])
}

approval_reasons contains msg if {
	not known
	valid_name
	entry.outcome != "deny"
	msg := sprintf("tool %s is not in the catalogue, so calls need approval", [name])
}

approval_reasons contains msg if {
	known
	entry.outcome == "allow"
	is_object(entry.approve_above)
	some arg, limit in entry.approve_above
	v := arguments[arg]
	is_number(v)
	v > limit
	msg := sprintf("argument %s %v is above %v, which needs approval", [arg, shown(v), limit])
}
