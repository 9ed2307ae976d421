# Tests for data.acgs.sandbox: runtimes by trust tier and class, limits, network.
package acgs.sandbox_test

import data.acgs.sandbox

run := {
	"agent_id": "agent-7",
	"agent": {"trust_level": 0.9},
	"language": "python",
	"runtime": "auto",
	"limits": {"cpu_seconds": 30, "memory_mb": 256, "timeout_s": 30},
	"constitutional_hash": "cdd01ef066bc6cf2",
}

decide(req) := d if {
	d := sandbox.decision with input as req
}

denied_with(req, reason) if {
	d := decide(req)
	d.allow == false
	reason in d.reasons
}

test_trusted_agent_runs_with_requested_limits_and_defaults if {
	decide(run) == {
		"allow": true,
		"reasons": ["allowed on firecracker, gvisor, bwrap with the limits shown"],
		"limits": {"cpu_seconds": 30, "memory_mb": 256, "disk_mb": 1024, "timeout_s": 30, "pids": 64, "network": false},
		"network_allowed": false,
		"allowed_runtimes": ["firecracker", "gvisor", "bwrap"],
		"minimum_runtime": "bwrap",
		"trust_tier": "high",
		"constitutional_hash": "cdd01ef066bc6cf2",
	}
}

test_medium_trust_requires_gvisor if {
	req := json.patch(run, [{"op": "replace", "path": "/agent/trust_level", "value": 0.6}])
	d := decide(req)
	d.allow
	d.minimum_runtime == "gvisor"
	d.allowed_runtimes == ["firecracker", "gvisor"]
	decide(json.patch(req, [{"op": "replace", "path": "/runtime", "value": "gvisor"}])).allow
	denied_with(
		json.patch(req, [{"op": "replace", "path": "/runtime", "value": "bwrap"}]),
		"runtime bwrap is weaker than gvisor, the minimum for trust tier medium",
	)
}

test_low_trust_gets_tighter_limits if {
	req := json.patch(run, [{"op": "replace", "path": "/agent/trust_level", "value": 0.1}])
	d := decide(req)
	d.trust_tier == "low"
	d.minimum_runtime == "gvisor"
	d.allow
	denied_with(
		json.patch(req, [{"op": "replace", "path": "/limits/timeout_s", "value": 120}]),
		"limits.timeout_s 120 exceeds the maximum 60",
	)
}

test_limits_above_the_constitution_deny_and_are_shown_clamped if {
	req := json.patch(run, [{"op": "replace", "path": "/limits", "value": {"cpu_seconds": 601, "memory_mb": 4097, "disk_mb": 10241, "timeout_s": 301, "pids": 101}}])
	d := decide(req)
	d.allow == false
	d.reasons == [
		"limits.cpu_seconds 601 exceeds the maximum 600",
		"limits.disk_mb 10241 exceeds the maximum 10240",
		"limits.memory_mb 4097 exceeds the maximum 4096",
		"limits.pids 101 exceeds the maximum 100",
		"limits.timeout_s 301 exceeds the maximum 300",
	]
	d.limits == {"cpu_seconds": 600, "memory_mb": 4096, "disk_mb": 10240, "timeout_s": 300, "pids": 100, "network": false}
}

test_limits_at_the_maximum_are_allowed if {
	req := json.patch(run, [{"op": "replace", "path": "/limits", "value": {"cpu_seconds": 600, "memory_mb": 4096, "disk_mb": 10240, "timeout_s": 300, "pids": 100}}])
	decide(req).allow
}

test_malformed_limits_deny if {
	cases := [
		[{"pids": 2.5}, "limits.pids must be a positive integer"],
		[{"memory_mb": "512"}, "limits.memory_mb must be a positive integer"],
		[{"cpu_seconds": 0}, "limits.cpu_seconds must be a positive number"],
		[{"gpus": 1}, "unknown limit gpus (known: cpu_seconds, disk_mb, memory_mb, pids, timeout_s, network)"],
		[{"network": "yes"}, "limits.network must be of type boolean, not string"],
	]
	every case in cases {
		denied_with(json.patch(run, [{"op": "replace", "path": "/limits", "value": case[0]}]), case[1])
	}
	decide(json.patch(run, [{"op": "replace", "path": "/limits", "value": {"cpu_seconds": 1.5}}])).allow
}

test_network_only_for_agents_allowed_it if {
	req := json.patch(run, [{"op": "add", "path": "/limits/network", "value": true}])
	d := decide(req)
	d.allow
	d.network_allowed
	d.limits.network
	low := json.patch(req, [{"op": "replace", "path": "/agent/trust_level", "value": 0.6}])
	denied_with(low, "network access is not allowed for this agent")
	decide(low).network_allowed == false
}

test_class_can_only_tighten if {
	isolated := json.patch(run, [{"op": "add", "path": "/agent/class", "value": "isolated"}])
	d := decide(isolated)
	d.minimum_runtime == "firecracker"
	d.allowed_runtimes == ["firecracker"]
	denied_with(json.patch(isolated, [{"op": "add", "path": "/limits/network", "value": true}]), "network access is not allowed for this agent")
	standard := json.patch(run, [
		{"op": "add", "path": "/agent/class", "value": "standard"},
		{"op": "replace", "path": "/agent/trust_level", "value": 0.6},
		{"op": "replace", "path": "/runtime", "value": "docker"},
	])
	denied_with(standard, "runtime docker is weaker than gvisor, the minimum for trust tier medium")
	decide(standard).minimum_runtime == "gvisor"
	denied_with(
		json.patch(run, [{"op": "add", "path": "/agent/class", "value": "root"}]),
		"agent class root is not one of: isolated, standard, untrusted_code",
	)
}

test_class_allowing_network_keeps_it_for_high_trust if {
	req := json.patch(run, [{"op": "add", "path": "/agent/class", "value": "standard"}, {"op": "add", "path": "/limits/network", "value": true}])
	decide(req).network_allowed
}

test_runtime_and_language_are_checked if {
	denied_with(json.patch(run, [{"op": "replace", "path": "/runtime", "value": "chroot"}]), "runtime chroot is not one of: auto, firecracker, gvisor, bwrap, docker")
	denied_with(json.patch(run, [{"op": "replace", "path": "/language", "value": "cobol"}]), "language cobol is not one of: bash, javascript, python, sh")
	denied_with(json.patch(run, [{"op": "remove", "path": "/language"}]), "language is required (one of: bash, javascript, python, sh)")
	decide(json.patch(run, [{"op": "remove", "path": "/runtime"}])).allow
}

test_identity_trust_and_hash_are_required if {
	denied_with(json.patch(run, [{"op": "remove", "path": "/agent_id"}]), "agent_id must be a non-empty string")
	denied_with(json.patch(run, [{"op": "remove", "path": "/constitutional_hash"}]), "constitutional_hash is missing")
	no_trust := json.patch(run, [{"op": "remove", "path": "/agent/trust_level"}])
	denied_with(no_trust, "agent.trust_level is missing")
	d := decide(no_trust)
	d.allowed_runtimes == []
	d.minimum_runtime == null
	denied_with(json.patch(run, [{"op": "replace", "path": "/agent/trust_level", "value": 2}]), "agent.trust_level must be within [0, 1], got 2")
	denied_with(json.patch(run, [{"op": "replace", "path": "/agent", "value": "trusted"}]), "agent must be of type object, not string")
}

test_non_object_input_denies if {
	every bad in [null, "python", [run]] {
		d := decide(bad)
		d.allow == false
		d.reasons == ["input must be a JSON object"]
		d.allowed_runtimes == []
	}
	sandbox.decision.allow == false
}

# The registry's level (trusted.agent, set by the service) caps a claimed trust level: an
# agent registered as low trust gets the low tier whatever it claims.
test_a_claimed_trust_cannot_raise_the_registered_tier if {
	claimed_high := object.union(run, {"agent": {"trust_level": 1}, "trusted": {"agent": {"trust_level": 0.1}}})
	d := decide(claimed_high)
	d.trust_tier == decide(object.union(run, {"agent": {"trust_level": 0.1}})).trust_tier
	d.trust_tier != decide(run).trust_tier
}

test_the_registered_trust_stands_without_a_claim if {
	d := decide(object.union(object.remove(run, ["agent"]), {"trusted": {"agent": {"trust_level": 0.9}}}))
	d.allow == true
	d.trust_tier == decide(run).trust_tier
}

test_runs_past_the_per_minute_limit_deny if {
	limit := data.acgs.constitution.rate_limits.per_minute.execute
	denied_with(
		json.patch(run, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": limit + 1}}]),
		sprintf("rate limit exceeded: %v requests in 60 s, limit %v", [limit + 1, limit]),
	)
	decide(json.patch(run, [{"op": "add", "path": "/trusted", "value": {"request_count_1m": limit}}])).allow
	decide(json.patch(run, [{"op": "add", "path": "/trusted", "value": {"agent": {"trust_level": 0.9}}}])).allow
}
