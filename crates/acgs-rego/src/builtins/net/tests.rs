use super::*;

fn call(name: &str, args: &[Value]) -> BuiltinResult {
    let f = lookup(name).unwrap();
    f(args, &Context { now_ns: 0 })
}

fn v(text: &str) -> Value {
    Value::parse_rego(text).unwrap()
}

fn ok(name: &str, args: &str) -> Value {
    let Value::Array(a) = v(args) else {
        unreachable!()
    };
    call(name, &a).unwrap().unwrap()
}

fn fails(name: &str, args: &str) -> String {
    let Value::Array(a) = v(args) else {
        unreachable!()
    };
    call(name, &a).unwrap_err().0
}

#[test]
fn cidr_is_valid_matches_go_parsing() {
    for (text, want) in [
        (r#""192.168.1.0/24""#, true),
        (r#""2002::1234:abcd:ffff:c0a8:101/64""#, true),
        (r#""192.168.1.2""#, false),
        (r#""""#, false),
        (r#""01.2.3.4/8""#, false),
        (r#""1.2.3.4/08""#, true),
        (r#""1.2.3.4/+8""#, false),
        (r#""1.2.3.4/33""#, false),
        (r#""::1.2.3.4/8""#, true),
        ("1", false),
    ] {
        assert_eq!(
            ok("net.cidr_is_valid", &format!("[{text}]")),
            Value::Bool(want),
            "{text}"
        );
    }
}

#[test]
fn cidr_expand_lists_addresses() {
    assert_eq!(
        ok("net.cidr_expand", r#"["192.168.1.1/30"]"#),
        v(r#"{"192.168.1.0", "192.168.1.1", "192.168.1.2", "192.168.1.3"}"#)
    );
    assert_eq!(
        ok("net.cidr_expand", r#"["::ffff:1.2.3.0/126"]"#),
        v(r#"{"1.2.3.0", "1.2.3.1", "1.2.3.2", "1.2.3.3"}"#)
    );
    assert_eq!(
        ok("net.cidr_expand", r#"["255.255.255.255/32"]"#),
        v(r#"{"255.255.255.255"}"#)
    );
    assert_eq!(
        ok("net.cidr_expand", r#"["ffff::/127"]"#),
        v(r#"{"ffff::", "ffff::1"}"#)
    );
    assert_eq!(
        fails("net.cidr_expand", r#"["foo"]"#),
        "invalid CIDR address: foo"
    );
    assert!(fails("net.cidr_expand", r#"["10.0.0.0/8"]"#).contains("does not expand"));
}

#[test]
fn cidr_contains_matches_reports_indexes() {
    assert_eq!(
        ok(
            "net.cidr_contains_matches",
            r#"[["1.1.1.0/24", "1.1.2.0/24"], "1.1.1.128"]"#
        ),
        v(r#"{[0, "1.1.1.128"]}"#)
    );
    assert_eq!(
        ok(
            "net.cidr_contains_matches",
            r#"[{"a": "1.1.1.0/24", "b": ["1.1.2.0/24", "x"]}, {["1.1.2.3", 7], "1.1.1.5/32"}]"#
        ),
        v(r#"{["a", "1.1.1.5/32"], ["b", ["1.1.2.3", 7]]}"#)
    );
    assert_eq!(
        ok(
            "net.cidr_contains_matches",
            r#"["::ffff:1.1.1.0/120", "1.1.1.7"]"#
        ),
        v(r#"{["::ffff:1.1.1.0/120", "1.1.1.7"]}"#)
    );
    assert_eq!(
        fails("net.cidr_contains_matches", r#"[[[]], "1.1.1.1"]"#),
        "operand 1: element must be string or non-empty array"
    );
    assert_eq!(
        fails("net.cidr_contains_matches", r#"["1.1.1.0/24", "nope"]"#),
        "not a valid textual representation of an IP address or CIDR: nope"
    );
}

#[test]
fn cidr_merge_follows_opa() {
    assert_eq!(
        ok(
            "net.cidr_merge",
            r#"[["192.0.128.0/24", "192.0.129.0/24"]]"#
        ),
        v(r#"{"192.0.128.0/23"}"#)
    );
    assert_eq!(
        ok(
            "net.cidr_merge",
            r#"[["10.1.2.3", "130.1.2.3", "200.1.2.3", "10.1.2.3/32"]]"#
        ),
        v(r#"{"10.0.0.0/8", "130.1.2.3/16", "200.1.2.3/24"}"#)
    );
    assert_eq!(
        ok(
            "net.cidr_merge",
            r#"[{"1.0.0.1/32", "1.0.0.2/31", "1.0.0.4/30"}]"#
        ),
        v(r#"{"1.0.0.1/32", "1.0.0.2/31", "1.0.0.4/30"}"#)
    );
    assert_eq!(
        ok(
            "net.cidr_merge",
            r#"[["1.0.0.1/32", "1.0.0.2/31", "1.0.0.4/30", "1.0.0.0/32"]]"#
        ),
        v(r#"{"1.0.0.0/29"}"#)
    );
    assert_eq!(
        ok(
            "net.cidr_merge",
            r#"[["2601:600:8a80:207e:a57d:7567:e2c9:e7b3/64", "2601:600:8a80:207e:a57d:7567:e2c9:e7b3/128"]]"#
        ),
        v(r#"{"2601:600:8a80:207e::/64"}"#)
    );
    assert_eq!(
        fails(
            "net.cidr_merge",
            r#"[["2601:600:8a80:207e:a57d:7567:e2c9:e7b3"]]"#
        ),
        "IPv6 invalid: needs prefix length"
    );
    assert_eq!(
        fails("net.cidr_merge", r#"[[1]]"#),
        "element must be string"
    );
    assert_eq!(
        fails("net.cidr_merge", r#"["1.1.1.1/32"]"#),
        "operand must be an array"
    );
    assert_eq!(ok("net.cidr_merge", "[[]]"), v("set()"));
}

#[test]
fn lookup_resolves_literals() {
    assert_eq!(
        ok("net.lookup_ip_addr", r#"["10.0.0.0"]"#),
        v(r#"{"10.0.0.0"}"#)
    );
    assert_eq!(ok("net.lookup_ip_addr", r#"["::"]"#), v(r#"{"::"}"#));
    assert_eq!(
        fails("net.lookup_ip_addr", "[1]"),
        "operand 1 must be string but got number"
    );
}

#[test]
fn host_side_builtins() {
    assert_eq!(ok("trace", r#"["note"]"#), Value::Bool(true));
    assert_eq!(
        ok("internal.print", r#"[[{"a"}, set(), {1, 2}]]"#),
        Value::Null
    );
    let rt = ok("opa.runtime", "[]");
    let Value::Object(o) = &rt else {
        unreachable!()
    };
    assert_eq!(o.get(&Value::str("env")), Some(&v("{}")));
    assert_eq!(
        o.get(&Value::str("version")),
        Some(&Value::str(env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        fails(
            "http.send",
            r#"[{"method": "get", "url": "http://example.com"}]"#
        ),
        "http.send is disabled by the ACGS host"
    );
    assert_eq!(
        opa_string(&v(r#"{"a": [1, {2}], "b": set()}"#)),
        r#"{"a": [1, {2}], "b": set()}"#
    );
}

const AWS_CFG: &str = r#"{"aws_access_key": "MYAWSACCESSKEYGOESHERE", "aws_secret_access_key": "MYAWSSECRETACCESSKEYGOESHERE", "aws_service": "s3", "aws_region": "us-east-1"}"#;

#[test]
fn aws_sign_req_matches_opa() {
    let out = ok(
        "providers.aws.sign_req",
        &format!(
            r#"[{{"method": "get", "url": "http://example.com", "headers": {{"foo": "bar"}}}}, {AWS_CFG}, 1451311705000000000]"#
        ),
    );
    let Value::Object(o) = &out else {
        unreachable!()
    };
    let Some(Value::Object(h)) = o.get(&Value::str("headers")) else {
        unreachable!()
    };
    assert_eq!(
        h.get(&Value::str("Authorization")).and_then(Value::as_str),
        Some("AWS4-HMAC-SHA256 Credential=MYAWSACCESSKEYGOESHERE/20151228/us-east-1/s3/aws4_request,SignedHeaders=foo;host;x-amz-content-sha256;x-amz-date,Signature=8f1dc7c9b9978356a0d0989fd26a95307f4f8a4aa264d8220647b7097d839952")
    );
    assert_eq!(h.get(&Value::str("foo")), Some(&Value::str("bar")));
    assert_eq!(
        h.get(&Value::str("x-amz-date")),
        Some(&Value::str("20151228T140825Z"))
    );

    assert_eq!(
        fails(
            "providers.aws.sign_req",
            &format!(r#"[{{"headers": {{}}}}, {AWS_CFG}, 1]"#)
        ),
        r#"operand 1 missing required request parameters(s): {"method", "url"}"#
    );
    assert_eq!(
        fails(
            "providers.aws.sign_req",
            r#"[{"method": "get", "url": "http://example.com"}, {}, 1]"#
        ),
        r#"operand 2 missing required AWS config parameters(s): {"aws_access_key", "aws_region", "aws_secret_access_key", "aws_service"}"#
    );
    assert_eq!(
        fails(
            "providers.aws.sign_req",
            &format!(r#"[{{"method": "get", "url": "http://example.com"}}, {AWS_CFG}, 1.5]"#)
        ),
        "operand 3 could not convert time_ns value into a unix timestamp"
    );
}
