# Unit tests of the helpers in acgs.lib, the forms the Wasm build pays least for included.
package acgs.lib_test

import data.acgs.lib

test_lookup_tells_absent_from_false_and_null if {
	doc := {"a": {"f": false, "n": null, "z": 0, "s": "x"}}
	lib.lookup(doc, ["a", "f"]) == false
	lib.lookup(doc, ["a", "n"]) == null
	lib.lookup(doc, ["a", "z"]) == 0
	lib.present(doc, ["a", "n"])
	lib.absent(doc, ["a", "missing"])
	lib.absent(doc, ["a", "s", "deeper"])
	lib.absent(doc, ["b"])
}

test_round_score_answers_integers_and_rounds_the_rest if {
	lib.round_score(1) == 1
	lib.round_score(1.0) == 1
	lib.round_score(0) == 0
	lib.round_score(-0) == 0
	lib.round_score(0.96) == 0.96
	lib.round_score(0.123456) == 0.1235
	lib.round_score(0.99995) == 1
	lib.round_score(2) == 2
}

test_ascii_lower_returns_lowercase_text_as_it_is if {
	lib.ascii_lower("already lower, with ü and 0.9") == "already lower, with ü and 0.9"
	lib.ascii_lower("MiXeD ü") == "mixed ü"
	lib.ascii_lower("") == ""
}

test_action_name_trims_and_lowers if {
	lib.action_name(" \tData.Read_Public\r\n") == "data.read_public"
	not lib.action_name(7)
}

test_valid_action_name_needs_non_empty_segments if {
	lib.valid_action_name("a")
	lib.valid_action_name("a.b_c.d9")
	not lib.valid_action_name("")
	not lib.valid_action_name(".")
	not lib.valid_action_name(".a")
	not lib.valid_action_name("a.")
	not lib.valid_action_name("a..b")
	not lib.valid_action_name("a b")
}

test_action_patterns_need_the_category_and_the_name if {
	lib.action_patterns_in("Network.DDoS_Attack_v2") == ["network.ddos_attack"]
	lib.action_patterns_in("ddos_attack") == []
	lib.action_patterns_in("network.other") == []
	lib.action_patterns_in("system.modify_kernel and system.disable_logging") == ["system.disable_logging", "system.modify_kernel"]
}
