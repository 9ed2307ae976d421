# Tests for data.acgs.tools: the catalogue, argument constraints, callers, sessions, approval.
package acgs.tools_test

import data.acgs.tools

call := {
	"tool": "read_file",
	"arguments": {"path": "/workspace/notes/todo.md"},
	"agent_id": "agent-7",
	"constitutional_hash": "cdd01ef066bc6cf2",
}

decide(req) := d if {
	d := tools.decision with input as req
}

with_tool(name, args) := object.union(call, {"tool": name, "arguments": args})

denied_with(req, reason) if {
	d := decide(req)
	d.outcome == "deny"
	d.allow == false
	d.approval == null
	reason in d.reasons
}

approval_with(req, reason) if {
	d := decide(req)
	d.outcome == "require_approval"
	d.allow == false
	is_object(d.approval)
	reason in d.reasons
}

allowed(req) if {
	d := decide(req)
	d.outcome == "allow"
	d.allow == true
	d.approval == null
}

# ---------------------------------------------------------------------------
# Outcomes

test_catalogued_tool_is_allowed_with_the_whole_decision if {
	decide(call) == {
		"outcome": "allow",
		"allow": true,
		"tool": "read_file",
		"known": true,
		"risk": "low",
		"reasons": ["tool read_file is allowed with these arguments"],
		"labels": ["reads_files"],
		"conditions": {"sandbox": false, "redact_arguments": false},
		"approval": null,
		"constitutional_hash": "cdd01ef066bc6cf2",
	}
}

test_names_are_matched_in_canonical_form if {
	d := decide(object.union(call, {"tool": "  Read_FILE\t"}))
	d.outcome == "allow"
	d.tool == "read_file"
	d.known
}

test_tool_denied_by_the_catalogue if {
	d := decide(with_tool("db.drop_table", {"table": "users"}))
	d.outcome == "deny"
	d.known
	d.risk == "critical"
	d.labels == ["destructive"]
	d.reasons == ["tool db.drop_table is denied by the constitution"]
}

test_tool_requiring_approval_carries_its_approval if {
	d := decide(with_tool("send_email", {"to": "bob@example.com", "subject": "hi"}))
	d.outcome == "require_approval"
	d.allow == false
	d.reasons == ["tool send_email requires approval"]
	d.approval == {"reviewers": 1, "expires_seconds": 3600, "roles": ["reviewer"]}
	d.conditions == {"sandbox": false, "redact_arguments": true}
}

test_unknown_tool_needs_the_default_approval if {
	d := decide(with_tool("github:create_issue", {"title": "x"}))
	d.outcome == "require_approval"
	d.known == false
	d.tool == "github:create_issue"
	d.risk == "high"
	d.labels == []
	d.reasons == ["tool github:create_issue is not in the catalogue, so calls need approval"]
	d.approval == data.acgs.constitution.tools.default.approval
}

test_unknown_tool_is_denied_when_the_default_denies if {
	d := decide(with_tool("fs/remove", {})) with data.acgs.constitution.tools.default.outcome as "deny"
	d.outcome == "deny"
	d.reasons == ["tool fs/remove is not in the catalogue, and unknown tools are denied"]
}

# A default of "allow" is a mistake in the data; an unknown tool still waits for a reviewer.
test_unknown_tool_is_never_allowed if {
	d := decide(with_tool("fs/remove", {})) with data.acgs.constitution.tools.default.outcome as "allow"
	d.outcome == "require_approval"
}

test_catalogue_entry_without_a_valid_outcome_is_denied if {
	denied_with(call, "tool read_file has no valid outcome in the catalogue") with data.acgs.constitution.tools.catalogue.read_file.outcome as "maybe"
}

test_sandbox_condition if {
	d := decide(with_tool("run_code", {"language": "python", "code": "print(1)"}))
	d.outcome == "allow"
	d.conditions == {"sandbox": true, "redact_arguments": false}
}

# ---------------------------------------------------------------------------
# Malformed input

test_non_object_input_is_a_deny if {
	every bad in [null, 3, "read_file", [call], true] {
		d := decide(bad)
		d.outcome == "deny"
		d.reasons == ["input must be a JSON object"]
		d.tool == null
		d.known == false
		d.approval == null
	}
}

test_tool_is_required_and_typed if {
	denied_with(json.remove(call, ["tool"]), "tool is required")
	d := decide(object.union(call, {"tool": 7}))
	d.tool == null
	"tool must be of type string, not number" in d.reasons
}

test_tool_names_outside_the_grammar_are_denied if {
	every name in ["read_file\u200b", "r\u0435ad_file", "read file", "read..file", ".read_file", "read_file/", "", "a:b:", "x/../y"] {
		d := decide(object.union(call, {"tool": name}))
		d.outcome == "deny"
		d.known == false
		some r in d.reasons
		contains(r, "is not in the tool-name grammar")
	}
	long := concat("", ["a" | some _ in numbers.range(1, 129)])
	d := decide(object.union(call, {"tool": long}))
	d.outcome == "deny"
	concat("", ["tool name ", substring(long, 0, 64), "... is not in the tool-name grammar (segments of a-z 0-9 _ - separated by '.', '/' or ':', at most 128 characters)"]) in d.reasons
}

test_agent_id_is_required if {
	denied_with(json.remove(call, ["agent_id"]), "agent_id must be a non-empty string")
	denied_with(object.union(call, {"agent_id": ""}), "agent_id must be a non-empty string")
}

test_arguments_must_be_an_object if {
	denied_with(object.union(call, {"arguments": [1]}), "arguments must be of type object, not array")
	denied_with(object.union(call, {"arguments": [1]}), "argument path is required")
}

test_absent_arguments_are_an_empty_object if {
	approval_with(json.remove(with_tool("github:create_issue", {}), ["arguments"]), "tool github:create_issue is not in the catalogue, so calls need approval")
	denied_with(json.remove(call, ["arguments"]), "argument path is required")
}

test_constitutional_hash_is_optional_but_checked if {
	allowed(json.remove(call, ["constitutional_hash"]))
	denied_with(object.union(call, {"constitutional_hash": "0000"}), "constitutional_hash 0000 does not match this constitution's cdd01ef066bc6cf2")
}

test_trust_levels_are_typed_and_bounded if {
	denied_with(object.union(call, {"agent": {"trust_level": "high"}}), "agent.trust_level must be of type number, not string")
	denied_with(object.union(call, {"agent": {"trust_level": 1.5}}), "agent.trust_level must be within [0, 1], got 1.5")
	denied_with(object.union(call, {"trusted": {"agent": {"trust_level": -1}}}), "trusted.agent.trust_level must be within [0, 1], got -1")
	denied_with(object.union(call, {"trusted": {"principal": {"roles": "dba"}}}), "trusted.principal.roles must be of type array, not string")
}

# ---------------------------------------------------------------------------
# Arguments

test_required_and_typed_arguments if {
	denied_with(with_tool("write_file", {"path": "/workspace/a"}), "argument content is required")
	denied_with(with_tool("write_file", {"path": "/workspace/a", "content": 5}), "argument content must be of type string, not number")
}

test_path_prefixes if {
	allowed(with_tool("read_file", {"path": "/workspace/a/b.txt"}))
	denied_with(with_tool("read_file", {"path": "/etc/passwd"}), "argument path /etc/passwd is not under any of: /workspace/")
	denied_with(with_tool("read_file", {"path": "/workspace/../etc/passwd"}), "argument path /workspace/../etc/passwd is not under any of: /workspace/")
	denied_with(with_tool("read_file", {"path": "/workspace-other/a"}), "argument path /workspace-other/a is not under any of: /workspace/")
	denied_with(with_tool("read_file", {"path": 5}), "argument path 5 is not under any of: /workspace/")
	allowed(with_tool("read_file", {"path": "/workspace/a..b/c"}))
}

test_path_deny_globs if {
	denied_with(with_tool("read_file", {"path": "/workspace/app/.env"}), "argument path /workspace/app/.env matches the forbidden pattern **/.env")
	denied_with(with_tool("read_file", {"path": "/workspace/.git/config"}), "argument path /workspace/.git/config matches the forbidden pattern **/.git/**")
	denied_with(with_tool("read_file", {"path": "/workspace/keys/id_ed25519"}), "argument path /workspace/keys/id_ed25519 matches the forbidden pattern **/id_*")
	allowed(with_tool("read_file", {"path": "/workspace/app/env.md"}))
}

test_path_globs if {
	req := with_tool("read_file", {"path": "/workspace/a.txt"})
	glob_only := {"path": {"globs": ["/workspace/*.md", "/workspace/docs/**"]}}
	denied_with(req, "argument path /workspace/a.txt matches none of: /workspace/*.md, /workspace/docs/**") with data.acgs.constitution.tools.catalogue.read_file.arguments as glob_only
	allowed(with_tool("read_file", {"path": "/workspace/docs/x/y.txt"})) with data.acgs.constitution.tools.catalogue.read_file.arguments as glob_only
	allowed(with_tool("read_file", {"path": "/workspace/a.md"})) with data.acgs.constitution.tools.catalogue.read_file.arguments as glob_only
	denied_with(with_tool("read_file", {"path": "/workspace/sub/a.md"}), "argument path /workspace/sub/a.md matches none of: /workspace/*.md, /workspace/docs/**") with data.acgs.constitution.tools.catalogue.read_file.arguments as glob_only
}

test_url_hosts if {
	allowed(with_tool("http_get", {"url": "https://api.github.com/repos"}))
	allowed(with_tool("http_get", {"url": "HTTPS://EN.Wikipedia.org/wiki/Rego"}))
	allowed(with_tool("http_get", {"url": "https://de.m.wikipedia.org"}))
	allowed(with_tool("http_get", {"url": "https://pypi.org:443/simple?x=1"}))
	denied_with(with_tool("http_get", {"url": "https://wikipedia.org/"}), "argument url: host wikipedia.org is not one of: *.wikipedia.org, api.github.com, pypi.org")
	denied_with(with_tool("http_get", {"url": "https://evilwikipedia.org/"}), "argument url: host evilwikipedia.org is not one of: *.wikipedia.org, api.github.com, pypi.org")
	denied_with(with_tool("http_get", {"url": "https://api.github.com.evil.io/"}), "argument url: host api.github.com.evil.io is not one of: *.wikipedia.org, api.github.com, pypi.org")
}

test_urls_parsers_disagree_on_are_refused if {
	every url in [
		"https://api.github.com@evil.io/",
		"https://evil.io\\@api.github.com/",
		"https://[::1]/",
		"https://api.github.com./",
		"https://%61pi.github.com/",
		"https://api.github.com:123456/",
		"https://api.github.com:/",
		"https:///x",
		"https://-api.github.com/",
		"https://api-.github.com/",
		"https://api.github.com:44a/",
		"https://api.github.com:1:2/",
		"https://",
	] {
		d := decide(with_tool("http_get", {"url": url}))
		d.outcome == "deny"
		d.reasons == [sprintf("argument url %s has a host ACGS does not accept (user info, IP literal or other characters)", [url])]
	}
	every url in ["api.github.com/x", "1http://api.github.com/", "ht!tp://api.github.com/", "://api.github.com/"] {
		denied_with(with_tool("http_get", {"url": url}), sprintf("argument url %s is not an absolute URL with a host", [url]))
	}
	denied_with(with_tool("http_get", {"url": 7}), "argument url must be a URL")
}

test_numbers_bounds_and_enums if {
	pay := {"amount": 50, "currency": "EUR", "to_account": "DE89370400440532013000"}
	d := decide(object.union(with_tool("payments.transfer", pay), {"agent": {"trust_level": 0.95}}))
	d.outcome == "allow"
	d.conditions.redact_arguments
	denied_with(object.union(with_tool("payments.transfer", object.union(pay, {"amount": 0})), {"agent": {"trust_level": 0.95}}), "argument amount (redacted) is below the minimum 0.01")
	denied_with(object.union(with_tool("payments.transfer", object.union(pay, {"amount": 10000.000000000001})), {"agent": {"trust_level": 0.95}}), "argument amount (redacted) is above the maximum 10000")
	denied_with(object.union(with_tool("payments.transfer", object.union(pay, {"currency": "BTC"})), {"agent": {"trust_level": 0.95}}), "argument currency (redacted) is not one of: EUR, GBP, USD")
	denied_with(with_tool("db.query", {"sql": "select 1", "limit": "9"}), "argument limit 9 is below the minimum 1")
	denied_with(with_tool("db.query", {"sql": "select 1", "limit": "9"}), "argument limit 9 is above the maximum 1000")
	allowed(with_tool("db.query", {"sql": "select 1", "limit": 1000}))
}

test_patterns if {
	allowed(with_tool("db.query", {"sql": "  SELECT * FROM t"}))
	denied_with(with_tool("db.query", {"sql": "delete from t"}), "argument sql delete from t does not match the pattern ^(?i)\\s*select\\s")
	denied_with(with_tool("db.query", {"sql": 3}), "argument sql 3 does not match the pattern ^(?i)\\s*select\\s")
}

test_long_values_are_cut_in_reasons if {
	long := concat("", ["/etc/", concat("", ["x" | some _ in numbers.range(1, 100)])])
	d := decide(with_tool("read_file", {"path": long}))
	some r in d.reasons
	r == sprintf("argument path %s... is not under any of: /workspace/", [substring(long, 0, 64)])
}

test_approve_above if {
	pay := {"amount": 100, "currency": "EUR", "to_account": "DE89370400440532013000"}
	allowed(object.union(with_tool("payments.transfer", pay), {"agent": {"trust_level": 0.95}}))
	req := object.union(with_tool("payments.transfer", object.union(pay, {"amount": 100.5})), {"agent": {"trust_level": 0.95}})
	approval_with(req, "argument amount (redacted) is above 100, which needs approval")
	decide(req).approval == {"reviewers": 2, "expires_seconds": 1800, "roles": ["finance"]}
}

# ---------------------------------------------------------------------------
# Callers

test_min_trust_uses_the_believed_trust if {
	req := with_tool("read_secret", {"name": "db/password"})
	denied_with(req, "tool read_secret needs a caller trust level of at least 0.8, the caller has none")
	allowed(object.union(req, {"agent": {"trust_level": 0.9}}))
	allowed(object.union(req, {"trusted": {"agent": {"trust_level": 0.8}}}))

	# A claim lowers the registered level and never raises it.
	denied_with(object.union(req, {"agent": {"trust_level": 0.9}, "trusted": {"agent": {"trust_level": 0.5}}}), "tool read_secret needs a caller trust level of at least 0.8, the caller has 0.5")
	denied_with(object.union(req, {"agent": {"trust_level": 0.3}, "trusted": {"agent": {"trust_level": 0.9}}}), "tool read_secret needs a caller trust level of at least 0.8, the caller has 0.3")
}

test_caller_roles_come_from_the_principal if {
	req := with_tool("db.delete_rows", {"table": "sessions", "where": "expired"})
	denied_with(req, "tool db.delete_rows needs a caller with one of the roles: dba")
	denied_with(object.union(req, {"roles": ["dba"]}), "tool db.delete_rows needs a caller with one of the roles: dba")
	approval_with(object.union(req, {"trusted": {"principal": {"id": "ops", "roles": ["dba", "x"]}}}), "tool db.delete_rows requires approval")
	decide(object.union(req, {"trusted": {"principal": {"id": "ops", "roles": ["dba"]}}})).approval.roles == ["dba"]
}

test_caller_agents if {
	agents := {"agents": ["agent-7", "agent-9"]}
	allowed(call) with data.acgs.constitution.tools.catalogue.read_file.callers as agents
	denied_with(object.union(call, {"agent_id": "agent-8"}), "tool read_file may only be called by the agents: agent-7, agent-9") with data.acgs.constitution.tools.catalogue.read_file.callers as agents

	# The authenticated principal, when there is one, is the caller, whatever agent_id says.
	denied_with(object.union(call, {"trusted": {"principal": {"id": "agent-8"}}}), "tool read_file may only be called by the agents: agent-7, agent-9") with data.acgs.constitution.tools.catalogue.read_file.callers as agents
	allowed(object.union(call, {"agent_id": "x", "trusted": {"principal": {"id": "agent-9"}}})) with data.acgs.constitution.tools.catalogue.read_file.callers as agents
}

# ---------------------------------------------------------------------------
# Sessions

history_of(entries) := {"id": "s-1", "history": entries}

send := with_tool("http_get", {"url": "https://api.github.com/x"})

rule_reason(earlier) := sprintf("session rule no_exfiltration_after_secrets: no call that sends data out after a call that read secrets or private data (earlier call: %s)", [earlier])

test_no_exfiltration_after_secrets if {
	secret := {"tool": "read_secret", "outcome": "allow", "labels": ["reads_secrets"]}
	denied_with(object.union(send, {"session": history_of([secret])}), rule_reason("read_secret"))
	crm := {"tool": "crm.lookup_customer", "outcome": "approved", "labels": ["reads_private_data"]}
	denied_with(object.union(send, {"session": history_of([{"tool": "read_file", "outcome": "allow", "labels": []}, crm, secret])}), rule_reason("crm.lookup_customer"))

	# A call still waiting for approval may have run (nobody may ever tell the service that
	# reviewers rejected it): it holds later sends until settled.
	denied_with(object.union(send, {"session": history_of([object.union(secret, {"outcome": "require_approval"})])}), rule_reason("read_secret"))

	# Denied or rejected earlier calls read nothing; calls that send nothing out are not held.
	allowed(object.union(send, {"session": history_of([object.union(secret, {"outcome": "deny"})])}))
	allowed(object.union(send, {"session": history_of([object.union(secret, {"outcome": "rejected"})])}))
	allowed(object.union(call, {"session": history_of([secret])}))
	allowed(object.union(send, {"session": {"id": "s-1"}}))
	allowed(object.union(send, {"session": history_of([{"tool": "read_file"}])}))
}

# A tool carrying both an after label and a deny label of one rule (here: reads customer
# records and sends them out), held for approval. Its first call is held for review; any entry
# of it in the history, its own included, denies it. So a service that decides the call again
# (at review, or when a remote guard resumes it) leaves the call's own entry out of the history
# (acgs.services.policy.sessions): a call is never its own predecessor. A second call of it,
# after the first ran, is denied.
export_entry := {"outcome": "require_approval", "risk": "high", "labels": ["reads_private_data", "sends_data_out"], "approval": {"reviewers": 1, "expires_seconds": 600, "roles": ["reviewer"]}}

test_a_tool_with_both_labels_of_a_rule if {
	export := with_tool("crm.export", {})
	own := {"tool": "crm.export", "outcome": "require_approval", "labels": ["reads_private_data", "sends_data_out"]}
	approval_with(object.union(export, across([], [])), "tool crm.export requires approval") with data.acgs.constitution.tools.catalogue["crm.export"] as export_entry
	denied_with(object.union(export, across([own], [own])), rule_reason("crm.export")) with data.acgs.constitution.tools.catalogue["crm.export"] as export_entry
	approved := object.union(own, {"outcome": "approved"})
	denied_with(object.union(export, across([approved], [approved])), rule_reason("crm.export")) with data.acgs.constitution.tools.catalogue["crm.export"] as export_entry
	rejected := object.union(own, {"outcome": "rejected"})
	approval_with(object.union(export, across([rejected], [rejected])), "tool crm.export requires approval") with data.acgs.constitution.tools.catalogue["crm.export"] as export_entry
}

test_malformed_sessions_are_denied if {
	denied_with(object.union(call, {"session": "s-1"}), "session must be of type object, not string")
	denied_with(object.union(call, {"session": {"history": {}}}), "session.history must be of type array, not object")
	denied_with(object.union(call, {"session": {"id": 5}}), "session.id must be of type string, not number")
	denied_with(object.union(call, {"session": history_of([3])}), "session.history entries must be objects with an array of labels")
	denied_with(object.union(call, {"session": history_of([{"tool": "x", "labels": "reads_secrets"}])}), "session.history entries must be objects with an array of labels")
	too_long := [{"tool": "read_file", "outcome": "allow", "labels": []} | some _ in numbers.range(1, 101)]
	denied_with(object.union(call, {"session": history_of(too_long)}), "session.history has 101 entries, more than the 100 allowed")
	allowed(object.union(call, {"session": history_of(array.slice(too_long, 0, 100))}))
}

# A malformed history is never read: the deny is for the history, not for a session rule.
test_malformed_history_is_not_read if {
	secret := {"tool": "read_secret", "outcome": "allow", "labels": ["reads_secrets"]}
	d := decide(object.union(send, {"session": history_of([secret, 3])}))
	d.reasons == ["session.history entries must be objects with an array of labels"]
}

# Through the policy service the history is the service's own record (trusted.session): the
# request's history is not read, whatever it says.
trusted_history(entries) := {"trusted": {"session": {"id": "s-1", "history": entries}}}

test_trusted_session_history_is_the_one_read if {
	secret := {"tool": "read_secret", "outcome": "allow", "labels": ["reads_secrets"]}

	# The service's record holds the read: the request's empty history does not clear it.
	denied_with(object.union(send, object.union({"session": history_of([])}, trusted_history([secret]))), rule_reason("read_secret"))
	denied_with(object.union(send, trusted_history([secret])), rule_reason("read_secret"))

	# The service's record is empty: a history the request makes up is not read either.
	allowed(object.union(send, object.union({"session": history_of([secret])}, trusted_history([]))))
	allowed(object.union(send, {"trusted": {"session": {"history": []}}}))

	# A trusted session without a history leaves the request's (embedded guards with facts).
	denied_with(object.union(send, {"session": history_of([secret]), "trusted": {"session": {"id": "s-1"}}}), rule_reason("read_secret"))
}

test_malformed_trusted_sessions_are_denied if {
	denied_with(object.union(call, {"trusted": {"session": "s-1"}}), "trusted.session must be of type object, not string")
	denied_with(object.union(call, {"trusted": {"session": {"id": 5, "history": []}}}), "trusted.session.id must be of type string, not number")
	denied_with(object.union(call, {"trusted": {"session": {"history": {}}}}), "trusted.session.history must be of type array, not object")
	denied_with(object.union(call, {"trusted": {"session": {"history": [3]}}}), "trusted.session.history entries must be objects with an array of labels")
	too_long := [{"tool": "read_file", "outcome": "allow", "labels": []} | some _ in numbers.range(1, 101)]
	denied_with(object.union(call, {"trusted": {"session": {"history": too_long}}}), "trusted.session.history has 101 entries, more than the 100 allowed")
	allowed(object.union(call, {"trusted": {"session": {"history": array.slice(too_long, 0, 100)}}}))
}

# The principal's calls across its sessions (trusted.session.principal_history): a rule of
# scope "principal" (the default) reads them, so a new session id (or none) sheds nothing; a
# rule of scope "session" reads the session's own history.
secret_read := {"tool": "read_secret", "outcome": "allow", "labels": ["reads_secrets"]}

across(session_entries, principal_entries) := {"trusted": {"session": {"id": "s-2", "history": session_entries, "principal_history": principal_entries}}}

session_scoped := [object.union(r, {"scope": "session"}) | some r in data.acgs.constitution.tools.session_rules]

test_principal_scope_reads_the_principals_calls_across_sessions if {
	# The secret was read in another session: this one's history is empty.
	denied_with(object.union(send, across([], [secret_read])), rule_reason("read_secret"))

	# A call that names no session has only the principal's history.
	denied_with(object.union(send, {"trusted": {"session": {"history": [], "principal_history": [secret_read]}}}), rule_reason("read_secret"))
	allowed(object.union(send, across([], [object.union(secret_read, {"outcome": "rejected"})])))
	allowed(object.union(send, across([], [])))

	# The principal's history is the services' alone: a request's session.history does not add to it.
	allowed(object.union(object.union(send, across([], [])), {"session": history_of([secret_read])}))

	# "principal" written out, or a scope the policy does not know, reads the same.
	denied_with(object.union(send, across([], [secret_read])), rule_reason("read_secret")) with data.acgs.constitution.tools.session_rules as [object.union(r, {"scope": "principal"}) | some r in data.acgs.constitution.tools.session_rules]
	denied_with(object.union(send, across([], [secret_read])), rule_reason("read_secret")) with data.acgs.constitution.tools.session_rules as [object.union(r, {"scope": "everywhere"}) | some r in data.acgs.constitution.tools.session_rules]
}

test_principal_scope_without_a_principal_history_reads_the_sessions if {
	# A trusted session without principal_history (embedded guards with facts), and embedded use.
	denied_with(object.union(send, trusted_history([secret_read])), rule_reason("read_secret"))
	denied_with(object.union(send, {"session": history_of([secret_read])}), rule_reason("read_secret"))
	allowed(object.union(send, trusted_history([])))
}

test_session_scope_reads_the_sessions_own_history if {
	allowed(object.union(send, across([], [secret_read]))) with data.acgs.constitution.tools.session_rules as session_scoped
	denied_with(object.union(send, across([secret_read], [secret_read])), rule_reason("read_secret")) with data.acgs.constitution.tools.session_rules as session_scoped

	# Embedded, both scopes read session.history.
	denied_with(object.union(send, {"session": history_of([secret_read])}), rule_reason("read_secret")) with data.acgs.constitution.tools.session_rules as session_scoped
}

test_malformed_principal_histories_are_denied if {
	denied_with(object.union(call, across([], {})), "trusted.session.principal_history must be of type array, not object")
	denied_with(object.union(call, across([], [3])), "trusted.session.principal_history entries must be objects with an array of labels")
	denied_with(object.union(call, across([], [{"tool": "x", "labels": "reads_secrets"}])), "trusted.session.principal_history entries must be objects with an array of labels")
	too_long := [{"tool": "read_file", "outcome": "allow", "labels": []} | some _ in numbers.range(1, 101)]
	denied_with(object.union(call, across([], too_long)), "trusted.session.principal_history has 101 entries, more than the 100 allowed")
	allowed(object.union(call, across([], array.slice(too_long, 0, 100))))

	# A malformed principal history is never read: the deny is for the record, not for a rule.
	d := decide(object.union(send, across([], [secret_read, 3])))
	d.reasons == ["trusted.session.principal_history entries must be objects with an array of labels"]
}

# ---------------------------------------------------------------------------
# The catalogue itself: the shape the rules rely on.

catalogue_data := data.acgs.constitution.tools

test_catalogue_is_well_formed if {
	risks := {"low", "medium", "high", "critical"}
	types := {"string", "number", "boolean", "object", "array"}
	catalogue_data.default.outcome in {"deny", "require_approval"}
	catalogue_data.default.risk in risks
	every name, e in catalogue_data.catalogue {
		tools.decision.tool == name with input as object.union(call, {"tool": name})
		e.risk in risks
		e.outcome in {"allow", "deny", "require_approval"}
		every _, spec in object.get(e, "arguments", {}) {
			spec.type in types
		}
		every arg, _ in object.get(e, "approve_above", {}) {
			e.arguments[arg].type == "number"
		}
	}
	every rule in catalogue_data.session_rules {
		regex.match(`^[a-z0-9_]+$`, rule.name)
		object.get(rule, "scope", "principal") in {"principal", "session"}
		count(rule.after_labels) > 0
		count(rule.deny_labels) > 0
	}
}

approval_shape(a) if {
	a.reviewers >= 1
	a.expires_seconds > 0
	count(a.roles) > 0
}

test_approvals_are_well_formed if {
	approval_shape(catalogue_data.default.approval)
	every _, e in catalogue_data.catalogue {
		approval_shape(object.get(e, "approval", catalogue_data.default.approval))
	}
}

# ---------------------------------------------------------------------------
# Globs: the string-operation shapes answer as glob.match does.

glob_patterns := [
	"**/.env", "**/.git/**", "**/*.pem", "**/id_*", "**/*", "**/**", "**/a/b", "**/a/b/**", "**/*.tar.gz",
	"**/x*", "/workspace/*.md", "/workspace/docs/**", "**/{a,b}", "**/a?", "**/[ab]", "**/a,b", "**/a\\*",
	"*", "**", "**/", "**/*/", "**/a/*", "**/a*/**",
]

glob_paths := [
	"", "/", ".env", "/.env", "a/.env", "/x/.env", "/x/.envx", "/x/y.env", "/.git/config", "/w/.git/",
	"/w/.git", "x.git/y", "/k/id_rsa", "/k/id_", "/k/xid_rsa", "/k/id_rsa/z", "/a.pem", "/a.pem/b", "a.pem",
	"/a/b", "/x/a/b", "/x/a/b/c", "/x/ab", "/x/a", "/x/b", "/x/a,b", "/x/a*", "/x/ax", "/workspace/r.md",
	"/workspace/s/r.md", "/workspace/docs/a/b", "//", "/a/b.tar.gz", "/x\u00e9/.env",
]

shaped_match(g, p) if {
	tools.glob_matches(g, p)
} else := false

test_glob_shapes_answer_as_glob_match if {
	every g in glob_patterns {
		every p in glob_paths {
			shaped_match(g, p) == glob.match(g, ["/"], p)
		}
	}
}

test_glob_shapes if {
	tools.glob_shape("**/.env") == ["suffix", "/.env"]
	tools.glob_shape("**/.git/**") == ["contains", "/.git/"]
	tools.glob_shape("**/*.pem") == ["last_suffix", ".pem"]
	tools.glob_shape("**/id_*") == ["last_prefix", "id_"]
	every g in ["**/{a,b}", "**/a?", "**/**", "/workspace/*.md", "**/a,b", "**/a*/**"] {
		not tools.glob_shape(g)
	}
}
