//! RFC 8785 canonical JSON: the RFC's examples and number table, the JCS reference test data,
//! ACGS's strictness rules, and randomised cross-checks between the parser, the value writer
//! and the zero-allocation checker.

// A panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use acgs_audit::jcs::{self, canonicalize, canonicalize_value, check_canonical, is_canonical};
use acgs_audit::Error;
use common::Rng;

fn canon(s: &str) -> String {
    String::from_utf8(canonicalize(s.as_bytes()).unwrap()).unwrap()
}

fn double(x: f64) -> String {
    let mut out = Vec::new();
    jcs::write_double(&mut out, x).unwrap();
    String::from_utf8(out).unwrap()
}

/// RFC 8785 Appendix B: IEEE-754 bit patterns and their ECMAScript serialisation.
const NUMBER_TABLE: &[(u64, &str)] = &[
    (0x0000_0000_0000_0000, "0"),
    (0x8000_0000_0000_0000, "0"),
    (0x0000_0000_0000_0001, "5e-324"),
    (0x8000_0000_0000_0001, "-5e-324"),
    (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
    (0xffef_ffff_ffff_ffff, "-1.7976931348623157e+308"),
    (0x4340_0000_0000_0000, "9007199254740992"),
    (0xc340_0000_0000_0000, "-9007199254740992"),
    (0x4430_0000_0000_0000, "295147905179352830000"),
    (0x44b5_2d02_c7e1_4af5, "9.999999999999997e+22"),
    (0x44b5_2d02_c7e1_4af6, "1e+23"),
    (0x44b5_2d02_c7e1_4af7, "1.0000000000000001e+23"),
    (0x444b_1ae4_d6e2_ef4e, "999999999999999700000"),
    (0x444b_1ae4_d6e2_ef4f, "999999999999999900000"),
    (0x444b_1ae4_d6e2_ef50, "1e+21"),
    (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
    (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
    (0x41b3_de43_5555_5553, "333333333.3333332"),
    (0x41b3_de43_5555_5554, "333333333.33333325"),
    (0x41b3_de43_5555_5555, "333333333.3333333"),
    (0x41b3_de43_5555_5556, "333333333.3333334"),
    (0x41b3_de43_5555_5557, "333333333.33333343"),
    (0xbecb_f647_612f_3696, "-0.0000033333333333333333"),
    // Round half to even on the last digit.
    (0x4314_3ff3_c1cb_0959, "1424953923781206.2"),
];

#[test]
fn rfc_number_table() {
    for &(bits, want) in NUMBER_TABLE {
        let x = f64::from_bits(bits);
        assert_eq!(double(x), want, "bits {bits:016x}");
        // The serialisation is itself canonical and reads back to the same double.
        check_canonical(want.as_bytes()).unwrap();
        assert_eq!(canon(want), want);
        assert_eq!(want.parse::<f64>().unwrap(), x);
    }
}

#[test]
fn non_finite_numbers_are_refused() {
    for bits in [
        0x7fff_ffff_ffff_ffff_u64,
        0x7ff0_0000_0000_0000,
        0xfff0_0000_0000_0000,
    ] {
        let mut out = Vec::new();
        let err = jcs::write_double(&mut out, f64::from_bits(bits)).unwrap_err();
        assert_eq!(err.code(), "number_out_of_range");
    }
    let err = canonicalize(b"1e400").unwrap_err();
    assert_eq!(err.code(), "number_out_of_range");
    assert_eq!(
        canonicalize(b"-1e400").unwrap_err().code(),
        "number_out_of_range"
    );
}

#[test]
fn rfc_section_3_2_3_sorting_example() {
    // The RFC's example: property names with characters from across the UTF-16 range.
    let input = r#"{
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\ud83d\ude00": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    let want = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
                \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
                \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
    assert_eq!(canon(input), want);
}

#[test]
fn rfc_section_3_2_4_values_example() {
    let input = r#"{
        "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
        "literals": [null, true, false]
    }"#;
    let want = "{\"literals\":[null,true,false],\
                \"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
                \"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
    assert_eq!(canon(input), want);
    // The RFC gives the UTF-8 bytes of the result in hex; spot-check the start and the euro sign.
    let bytes = canonicalize(input.as_bytes()).unwrap();
    assert_eq!(&bytes[..12], b"{\"literals\":");
    let euro = want.find('\u{20ac}').unwrap();
    assert_eq!(&bytes[euro..euro + 3], &[0xe2, 0x82, 0xac]);
}

/// The JCS reference implementation's test data (inputs and expected outputs), re-typed.
#[test]
fn reference_test_data() {
    let cases: &[(&str, &str)] = &[
        // arrays
        (
            "[\n  56,\n  {\n    \"d\": true,\n    \"10\": null,\n    \"1\": [ ]\n  }\n]",
            r#"[56,{"1":[],"10":null,"d":true}]"#,
        ),
        // french: no locale-aware collation
        (
            "{\n  \"peach\": \"This sorting order\",\n  \"péché\": \"is wrong according to French\",\n  \"pêche\": \"but canonicalization MUST\",\n  \"sin\":   \"ingnore locale\"\n}",
            r#"{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST","sin":"ingnore locale"}"#,
        ),
        // structures
        (
            "{\n  \"1\": {\"f\": {\"f\": \"hi\",\"F\": 5} ,\"\\n\": 56.0},\n  \"10\": { },\n  \"\": \"empty\",\n  \"a\": { },\n  \"111\": [ { } ],\n  \"A\": { }\n}",
            r#"{"":"empty","1":{"\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}"#,
        ),
        // unicode: no normalisation
        (
            "{\n  \"Unnormalized Unicode\":\"\\u1e0d\\u0307\"\n}",
            "{\"Unnormalized Unicode\":\"\u{1e0d}\u{307}\"}",
        ),
        // weird
        (
            "{\n  \"\\u20ac\": \"Euro Sign\",\n  \"1\": \"One\",\n  \"\\u0080\": \"Control\\u007f\",\n  \"\\ud83d\\ude02\": \"Smiley\",\n  \"\\u00f6\": \"Latin Small Letter O With Diaeresis\",\n  \"\\ufb33\": \"Hebrew Letter Dalet With Dagesh\",\n  \"</script>\": \"Browser Challenge\"\n}",
            "{\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f602}\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(&canon(input), want, "input {input}");
        check_canonical(want.as_bytes()).unwrap();
        let via_serde: serde_json::Value = serde_json::from_str(input).unwrap();
        assert_eq!(
            String::from_utf8(canonicalize_value(&via_serde).unwrap()).unwrap(),
            *want
        );
    }
}

#[test]
fn duplicate_keys_are_refused() {
    for input in [
        r#"{"a":1,"a":2}"#,
        r#"{"a":1,"b":{"x":1,"x":1}}"#,
        r#"{"\u0061":1,"a":2}"#,
        r#"{"\ud83d\ude00":1,"😀":2}"#,
    ] {
        let err = canonicalize(input.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::DuplicateKey(_)), "{input}: {err}");
        assert_eq!(
            check_canonical(input.as_bytes()).unwrap_err().code(),
            "duplicate_key"
        );
    }
}

#[test]
fn lone_surrogates_are_refused() {
    for input in [
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        r#"{"\udbff":1}"#,
    ] {
        let err = canonicalize(input.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "invalid_string", "{input}");
    }
    assert_eq!(canon(r#""\ud800\udc00""#), "\"\u{10000}\"");
}

#[test]
fn integers_keep_their_digits_or_are_refused() {
    // Exact and printed in full.
    assert_eq!(canon("9007199254740992"), "9007199254740992");
    assert_eq!(canon("-9007199254740992"), "-9007199254740992");
    assert_eq!(canon("9007199254740991"), "9007199254740991");
    assert_eq!(canon("100000000000000000000"), "100000000000000000000");
    assert_eq!(canon("295147905179352830000"), "295147905179352830000");
    assert_eq!(canon("-0"), "0");
    // A double would change these digits: refused rather than silently altered.
    for bad in [
        "9007199254740993",
        "-9007199254740993",
        "18446744073709551615",
        "1152921504606846976",
        "1000000000000000000000",
        "123456789012345678901234567890",
    ] {
        let err = canonicalize(bad.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "number_out_of_range", "{bad}");
    }
    // Written with a fraction or exponent, a number is a double as RFC 8785 says.
    assert_eq!(canon("9007199254740993.0"), "9007199254740992");
    assert_eq!(canon("1e21"), "1e+21");
    // The same rule through serde_json values.
    let big = serde_json::json!({"n": 9007199254740993u64});
    assert_eq!(
        canonicalize_value(&big).unwrap_err().code(),
        "number_out_of_range"
    );
    let ok = serde_json::json!({"n": 9007199254740992u64, "m": -5, "f": 0.5});
    assert_eq!(
        canonicalize_value(&ok).unwrap(),
        br#"{"f":0.5,"m":-5,"n":9007199254740992}"#
    );
    assert_eq!(jcs::integer_value("123").unwrap(), 123.0);
    assert!(jcs::integer_value("9007199254740993").is_err());
}

#[test]
fn invalid_json_is_refused_with_an_offset() {
    let cases: &[(&[u8], usize)] = &[
        (b"", 0),
        (b"{", 1),
        (b"[1,]", 3),
        (b"{\"a\" 1}", 5),
        (b"01", 1),
        (b"1.", 2),
        (b"1e", 2),
        (b"+1", 0),
        (b"nul", 0),
        (b"\"abc", 4),
        (b"\"a\x01\"", 2),
        (b"\"\\x\"", 2),
        (b"\"\\u12g4\"", 3),
        (b"[1] 2", 4),
        (b"\xef\xbb\xbf{}", 0),
        (b"\"\xff\"", 1),
    ];
    for (input, offset) in cases {
        match canonicalize(input) {
            Err(Error::InvalidJson { offset: at, .. }) => {
                assert_eq!(at, *offset, "{:?}", String::from_utf8_lossy(input));
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
        assert_eq!(check_canonical(input).unwrap_err().code(), "invalid_json");
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = format!(
        "{}{}",
        "[".repeat(jcs::MAX_DEPTH + 2),
        "]".repeat(jcs::MAX_DEPTH + 2)
    );
    assert_eq!(
        canonicalize(deep.as_bytes()).unwrap_err().code(),
        "invalid_json"
    );
    assert!(!is_canonical(deep.as_bytes()));
    let ok = format!(
        "{}{}",
        "[".repeat(jcs::MAX_DEPTH),
        "]".repeat(jcs::MAX_DEPTH)
    );
    assert_eq!(canon(&ok), ok);
    assert!(is_canonical(ok.as_bytes()));
    let mut value = serde_json::Value::Null;
    for _ in 0..jcs::MAX_DEPTH + 2 {
        value = serde_json::Value::Array(vec![value]);
    }
    assert_eq!(
        canonicalize_value(&value).unwrap_err().code(),
        "invalid_value"
    );
}

#[test]
fn checker_spots_each_way_of_being_non_canonical() {
    let canonical = [
        r#"{"a":[1,2.5,-3,"x\n",null,true,false,{}],"b":"\u001f\"\\/"}"#,
        "\"\u{7f}\u{2028}\"",
        r#""\u0000\u000b\u000e""#,
        "0",
        "-5e-324",
    ];
    for c in canonical {
        check_canonical(c.as_bytes()).unwrap();
        assert_eq!(canon(c), c);
    }
    let not_canonical = [
        r#"{"b":1,"a":2}"#,
        r#"{ "a":1}"#,
        r#"[1, 2]"#,
        "[1]\n",
        r#""\/""#,
        r#""\u0041""#,
        r#""\u000A""#,
        r#""\u000a""#,
        r#""\u001F""#,
        "1.0",
        "1E3",
        "-0",
        "0.10",
        "1e30",
        "333333333.33333329",
        r#"{"\u00e9":1,"f":2}"#,
        "{\"\u{e000}\":1,\"\u{10000}\":2}",
    ];
    for c in not_canonical {
        let err = check_canonical(c.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "not_canonical", "{c}: {err}");
        assert!(!is_canonical(c.as_bytes()));
        // A canonical form exists, and it passes.
        let fixed = canonicalize(c.as_bytes()).unwrap();
        assert_ne!(fixed, c.as_bytes());
        check_canonical(&fixed).unwrap();
    }
}

// ---- randomised cross-checks -------------------------------------------------------------

const KEY_POOL: &[&str] = &[
    "",
    "a",
    "b",
    "A",
    "aa",
    "ab",
    "id",
    "event_type",
    "agent_id",
    "é",
    "e\u{301}",
    "€",
    "😀",
    "\u{e000}",
    "\u{ffff}",
    "\u{10000}",
    "\u{d7ff}",
    "1",
    "10",
    "2",
    "\n",
    "\"",
    "\\",
    "/",
    "\u{1f}",
];

const NUMBER_POOL: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "1.0",
    "1.5",
    "-2.25",
    "1E3",
    "1e-7",
    "1e+21",
    "0.000001",
    "123456789",
    "9007199254740992",
    "9007199254740993",
    "100000000000000000000",
    "1e400",
    "4.50",
    "2e-3",
    "0.1",
    "1e-27",
    "5e-324",
    "1.7976931348623157e308",
];

/// Writes one character of a string, sometimes as an escape.
fn write_char(rng: &mut Rng, c: char, out: &mut String) {
    match c {
        '"' => out.push_str(if rng.chance(2) { "\\\"" } else { "\\u0022" }),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str(if rng.chance(2) { "\\n" } else { "\\u000a" }),
        c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
        '/' if rng.chance(2) => out.push_str("\\/"),
        c if rng.chance(8) => {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04X}", u));
            }
        }
        c => out.push(c),
    }
}

fn write_string(rng: &mut Rng, s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        write_char(rng, c, out);
    }
    out.push('"');
}

fn random_string(rng: &mut Rng) -> String {
    let chars = [
        'a', 'Z', ' ', '"', '\\', '/', '\n', '\u{1}', 'é', '€', '😀', '\u{7f}', '\u{2028}',
    ];
    (0..rng.below(6)).map(|_| *rng.pick(&chars)).collect()
}

fn ws(rng: &mut Rng, out: &mut String, canonical_bias: bool) {
    if !canonical_bias && rng.chance(3) {
        out.push_str(rng.pick::<&str>(&[" ", "\n", "\t ", "\r\n"]));
    }
}

/// A random JSON text; `tidy` makes it likely (not certain) to be canonical already.
fn random_json(rng: &mut Rng, depth: u32, tidy: bool, allow_dup: bool, out: &mut String) {
    let choice = if depth > 3 {
        rng.below(4)
    } else {
        rng.below(6)
    };
    match choice {
        0 => out.push_str(rng.pick::<&str>(&["null", "true", "false"])),
        1 => out.push_str(rng.pick::<&str>(NUMBER_POOL)),
        2 => {
            let s = random_string(rng);
            write_string(rng, &s, out);
        }
        3 => out.push_str(&rng.below(1000).to_string()),
        4 => {
            out.push('[');
            let n = rng.below(4);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out, tidy);
                random_json(rng, depth + 1, tidy, allow_dup, out);
            }
            out.push(']');
        }
        _ => {
            let mut keys: Vec<&str> = (0..rng.below(5)).map(|_| *rng.pick(KEY_POOL)).collect();
            if !allow_dup {
                keys.sort_unstable();
                keys.dedup();
            }
            if tidy {
                keys.sort_by(|a, b| jcs::cmp_utf16(a, b));
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out, tidy);
                if tidy {
                    let mut enc = Vec::new();
                    jcs::write_string(&mut enc, k);
                    out.push_str(std::str::from_utf8(&enc).unwrap());
                } else {
                    write_string(rng, k, out);
                }
                out.push(':');
                random_json(rng, depth + 1, tidy, allow_dup, out);
            }
            out.push('}');
        }
    }
}

#[test]
fn checker_agrees_with_canonicalize_on_random_documents() {
    let mut rng = Rng::new(8785);
    let mut canonical_seen = 0;
    for round in 0..20_000 {
        let tidy = round % 2 == 0;
        let mut text = String::new();
        random_json(&mut rng, 0, tidy, round % 7 == 0, &mut text);
        let bytes = text.as_bytes();
        match canonicalize(bytes) {
            Ok(c) => {
                // The canonical form is canonical and a fixed point.
                check_canonical(&c).unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(canonicalize(&c).unwrap(), c, "{text}");
                // The checker accepts exactly the texts that are their own canonical form.
                let same = c == bytes;
                assert_eq!(is_canonical(bytes), same, "{text}");
                canonical_seen += usize::from(same);
                if !same {
                    assert_eq!(check_canonical(bytes).unwrap_err().code(), "not_canonical");
                }
                // An independent route: serde_json's parser, then the value writer.
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
                    assert_eq!(canonicalize_value(&v).unwrap(), c, "{text}");
                }
            }
            Err(e) => {
                assert!(!is_canonical(bytes), "{text}");
                assert_eq!(check_canonical(bytes).unwrap_err(), e, "{text}");
            }
        }
    }
    assert!(
        canonical_seen > 1000,
        "generator made too few canonical texts"
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(1);
    for _ in 0..50_000 {
        let len = rng.below(40) as usize;
        let bytes = rng.bytes(len);
        let _ = canonicalize(&bytes);
        let _ = check_canonical(&bytes);
    }
    // Mutations of valid documents reach deeper into the parsers than noise does.
    let seed = br#"{"a":[1,2.5,-3e-7,"x\n\u0001",null,true,false,{"\u00e9":{}}],"b":"\"\\"}"#;
    for _ in 0..50_000 {
        let mut bytes = seed.to_vec();
        for _ in 0..=rng.below(3) {
            let i = rng.below(bytes.len() as u64) as usize;
            match rng.below(3) {
                0 => bytes[i] = rng.next_u64() as u8,
                1 => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, *rng.pick(b"{}[]\",:\\u0-e.+ ")),
            }
        }
        let c = canonicalize(&bytes);
        assert_eq!(c.as_ref().is_ok_and(|c| c == &bytes), is_canonical(&bytes));
    }
}
