# ACGS sandbox admission: may this agent run code, under which runtimes and with which limits?
#
# Entry point: data.acgs.sandbox.decision, asked by the sandbox controller (port 8001)
# before every run. Rules are data at data.acgs.constitution.sandbox; the maximum limits
# derive from the constitution's resource_limits (cpu_seconds = cpu_cores x
# execution_time_seconds, memory_mb = memory_gb x 1024, disk_mb = disk_gb x 1024,
# timeout_s = execution_time_seconds) plus sandbox.max_pids, tightened by the trust tier.
#
# Input: agent_id, agent{trust_level, class}, language, runtime (auto | firecracker | gvisor |
#   bwrap | docker; auto when absent), limits{cpu_seconds, memory_mb, disk_mb, timeout_s, pids,
#   network}, constitutional_hash; trusted.agent.trust_level (the caller's registered level,
#   set by the service: a claimed agent.trust_level only lowers it, see lib.believed_trust) and
#   trusted.request_count_1m (runs past rate_limits.per_minute.execute, set by the service).
package acgs.sandbox

import data.acgs.lib

c := data.acgs.constitution

sb := c.sandbox

decision := {
	"allow": false,
	"reasons": ["input must be a JSON object"],
	"limits": default_limits,
	"network_allowed": false,
	"allowed_runtimes": [],
	"minimum_runtime": null,
	"trust_tier": null,
	"constitutional_hash": c.constitutional_hash,
} if {
	not lib.input_is_object
} else := {
	"allow": allowed,
	"reasons": reasons,
	"limits": effective_limits,
	"network_allowed": network_allowed,
	"allowed_runtimes": allowed_runtimes,
	"minimum_runtime": minimum_runtime,
	"trust_tier": tier_name,
	"constitutional_hash": c.constitutional_hash,
}

default allowed := false

allowed if count(violations) == 0

reasons := sort(violations) if {
	count(violations) > 0
} else := [sprintf("allowed on %s with the limits shown", [concat(", ", allowed_runtimes)])]

# ---------------------------------------------------------------------------
# Trust tier and class: the class can only tighten what the tier allows, since a client
# names its own class.

agent := input.agent if {
	is_object(input.agent)
} else := {}

requested := input.limits if {
	is_object(input.limits)
} else := {}

trusted := input.trusted if {
	is_object(input.trusted)
} else := {}

trust := t if {
	t := lib.believed_trust(agent, trusted)
	lib.unit_interval(t)
}

registered_trust if is_number(trusted.agent.trust_level)

tier := [t | some t in sb.trust_tiers; trust >= t.min_trust][0]

tier_name := tier.name if {
	tier
} else := null

agent_class := sb.classes[agent.class] if is_string(agent.class)

strength(runtime) := i if sb.runtimes[i] == runtime

# Index into runtimes (strongest first) of the weakest runtime this agent may use.
minimum_index := min([strength(tier.minimum_runtime), strength(agent_class.minimum_runtime)]) if {
	agent_class
} else := strength(tier.minimum_runtime) if {
	lib.absent(agent, ["class"])
}

minimum_runtime := sb.runtimes[minimum_index] if {
	minimum_index >= 0
} else := null

allowed_runtimes := array.slice(sb.runtimes, 0, minimum_index + 1) if {
	minimum_index >= 0
} else := []

network_permitted if {
	tier.network == true
	lib.absent(agent, ["class"])
}

network_permitted if {
	tier.network == true
	agent_class.network == true
}

network_requested if requested.network == true

network_allowed if {
	network_requested
	network_permitted
}

default network_allowed := false

runtime := input.runtime if {
	lib.present(input, ["runtime"])
} else := "auto"

# ---------------------------------------------------------------------------
# Limits

numeric_limits := ["cpu_seconds", "disk_mb", "memory_mb", "pids", "timeout_s"]

integer_limits := {"disk_mb", "memory_mb", "pids"}

constitution_max := {
	"cpu_seconds": c.resource_limits.cpu_cores * c.resource_limits.execution_time_seconds,
	"memory_mb": c.resource_limits.memory_gb * 1024,
	"disk_mb": c.resource_limits.disk_gb * 1024,
	"timeout_s": c.resource_limits.execution_time_seconds,
	"pids": sb.max_pids,
}

tier_caps := tier.max_limits if {
	is_object(tier.max_limits)
} else := {}

max_limits := {k: v |
	some k in numeric_limits
	v := min([constitution_max[k], object.get(tier_caps, k, constitution_max[k])])
}

default_limits := object.union(
	{k: v | some k in numeric_limits; v := min([sb.default_limits[k], constitution_max[k]])},
	{"network": false},
)

valid_limit(k) if {
	v := requested[k]
	is_number(v)
	v > 0
	integral_if_required(k, v)
}

integral_if_required(k, _) if not k in integer_limits

integral_if_required(k, v) if {
	k in integer_limits
	v == round(v)
}

# Requested values (or the defaults) clamped to the maxima; a request above a maximum is
# denied, and the clamped value shows what the caller may ask for instead.
effective_limits := object.union(
	{k: v |
		some k in numeric_limits
		v := min([limit_value(k), max_limits[k]])
	},
	{"network": network_allowed},
)

limit_value(k) := requested[k] if {
	valid_limit(k)
} else := default_limits[k]

# ---------------------------------------------------------------------------
# Violations

typed_fields := [
	{"path": ["agent_id"], "type": "string"},
	{"path": ["agent"], "type": "object"},
	{"path": ["agent", "trust_level"], "type": "number"},
	{"path": ["agent", "class"], "type": "string"},
	{"path": ["language"], "type": "string"},
	{"path": ["runtime"], "type": "string"},
	{"path": ["limits"], "type": "object"},
	{"path": ["limits", "network"], "type": "boolean"},
	{"path": ["trusted"], "type": "object"},
	{"path": ["trusted", "agent"], "type": "object"},
	{"path": ["trusted", "agent", "trust_level"], "type": "number"},
]

violations contains msg if some msg in lib.hash_reasons(input)

violations contains msg if some msg in lib.type_reasons(input, typed_fields)

violations contains msg if some msg in lib.unit_reasons(input, [["agent", "trust_level"], ["trusted", "agent", "trust_level"]])

# The constitution's per-minute limit on runs (rate_limits.per_minute.execute), read from the
# count the service puts in input.trusted.
violations contains msg if some msg in lib.rate_limit_reasons(input, "execute")

violations contains "agent_id must be a non-empty string" if not lib.nonempty_string(object.get(input, "agent_id", null))

violations contains "agent.trust_level is missing" if {
	lib.absent(input, ["agent", "trust_level"])
	not registered_trust
}

violations contains msg if {
	cls := agent.class
	is_string(cls)
	not sb.classes[cls]
	msg := sprintf("agent class %s is not one of: %s", [cls, concat(", ", sort(object.keys(sb.classes)))])
}

violations contains msg if {
	not is_string(object.get(input, "language", null))
	msg := sprintf("language is required (one of: %s)", [concat(", ", sb.languages)])
}

violations contains msg if {
	is_string(input.language)
	not input.language in sb.languages
	msg := sprintf("language %s is not one of: %s", [input.language, concat(", ", sb.languages)])
}

violations contains msg if {
	is_string(runtime)
	runtime != "auto"
	not runtime in sb.runtimes
	msg := sprintf("runtime %s is not one of: auto, %s", [runtime, concat(", ", sb.runtimes)])
}

violations contains msg if {
	runtime in sb.runtimes
	minimum_runtime != null
	not runtime in allowed_runtimes
	msg := sprintf("runtime %s is weaker than %s, the minimum for trust tier %s", [runtime, minimum_runtime, tier_name])
}

violations contains msg if {
	some k, _ in requested
	k != "network"
	not k in numeric_limits
	msg := sprintf("unknown limit %s (known: %s, network)", [k, concat(", ", numeric_limits)])
}

violations contains msg if {
	some k in numeric_limits
	lib.present(requested, [k])
	not valid_limit(k)
	msg := sprintf("limits.%s must be %s", [k, limit_kind(k)])
}

limit_kind(k) := "a positive integer" if {
	k in integer_limits
} else := "a positive number"

violations contains msg if {
	some k in numeric_limits
	valid_limit(k)
	requested[k] > max_limits[k]
	msg := sprintf("limits.%s %v exceeds the maximum %v", [k, requested[k], max_limits[k]])
}

violations contains msg if {
	network_requested
	not network_permitted
	msg := "network access is not allowed for this agent"
}
