//! Admission of a request before any evaluator sees it: what a caller may not decide about its
//! own input. One step, used by every decision path (the REST services pass the facts they
//! built, embedded `decide` passes none); `decide` runs it on the tree it parses anyway
//! ([`admit_tree`]), the services' other inputs go through [`admit`].
//!
//! - `trusted` is the service's document (principal, registry record, usage counters). Whatever
//!   the client sent under that key is dropped; the service's document, when there is one, takes
//!   its place.
//! - A non-ASCII action name is put in Unicode NFKC form, so that compatibility spellings
//!   (full-width letters, ligatures, the Kelvin sign) become the ASCII name they stand for; the
//!   constitution then lowers, trims and checks the name against its grammar, which refuses
//!   every character left outside ASCII.
//!
//! Numbers keep their literal text (the reader keeps it), so admission never changes what a
//! number means. A request this reader cannot read is refused rather than passed on: another
//! parser might find a `trusted` member in it (a repeated key, say) that this one did not drop.
//! For the same reason a request that another reader could read differently (escapes, non-ASCII
//! text, the bytes `trusted`) reaches the Wasm as this reader wrote it, never as sent.

use std::borrow::Cow;

use unicode_normalization::{is_nfkc, UnicodeNormalization};

use crate::canon::Json;
use crate::error::{Error, Result};

/// The key of the service's facts in the policy input.
pub const TRUSTED_KEY: &str = "trusted";

/// Whether `raw` could hold anything admission changes, or anything another JSON reader might
/// read differently from this one. False means `raw` may go on as it is: no `trusted` key can
/// be spelt without the bytes `trusted` or an escape, and an action without non-ASCII bytes or
/// escapes is left alone.
pub(crate) fn may_need_admission(raw: &[u8]) -> bool {
    !raw.is_ascii()
        || memchr::memmem::find(raw, b"trusted").is_some()
        || memchr::memchr(b'\\', raw).is_some()
}

/// The service's facts (`trusted`, JSON bytes) read as a tree; an error unless they are one
/// JSON object.
pub fn parse_facts(trusted: &[u8]) -> Result<Json<'_>> {
    match Json::parse(trusted) {
        Ok(doc @ Json::Obj(_)) => Ok(doc),
        Ok(_) => Err(Error::InvalidInput(
            "the trusted document must be a JSON object".into(),
        )),
        Err(e) => Err(Error::InvalidInput(format!("the trusted document: {e}"))),
    }
}

/// Admission on a parsed request: its `trusted` member replaced by `facts` (from
/// [`parse_facts`]) or dropped when `facts` is None, and a non-ASCII `action` string put in
/// NFKC form. Documents that are not objects are left as they are (they have no members to
/// drop; the policy refuses them). Says whether the tree changed.
pub fn admit_tree<'a>(doc: &mut Json<'a>, facts: Option<Json<'a>>) -> bool {
    let Json::Obj(members) = doc else {
        return false;
    };
    // Members are sorted by key and unique (the reader refuses repeated keys), so one binary
    // search finds the client's `trusted` in whatever spelling it was sent.
    let mut changed = true;
    match (find(members, TRUSTED_KEY), facts) {
        (Ok(i), Some(facts)) => {
            if let Some(slot) = members.get_mut(i) {
                slot.1 = facts;
            }
        }
        (Ok(i), None) => {
            members.remove(i);
        }
        (Err(i), Some(facts)) => members.insert(i, (Cow::Borrowed(TRUSTED_KEY), facts)),
        (Err(_), None) => changed = false,
    }
    if let Ok(i) = find(members, "action") {
        if let Some((_, Json::Str(name))) = members.get_mut(i) {
            // ASCII and NFKC text is already in its canonical form: nothing to allocate.
            if !name.is_ascii() && !is_nfkc(name) {
                *name = Cow::Owned(name.nfkc().collect());
                changed = true;
            }
        }
    }
    changed
}

fn find(members: &[(Cow<'_, str>, Json<'_>)], key: &str) -> std::result::Result<usize, usize> {
    members.binary_search_by(|(k, _)| k.as_ref().cmp(key))
}

/// The bytes the Wasm reads for an admitted request: `raw` itself when admission changed
/// nothing and no other reader could read `raw` differently, else `doc` as this reader wrote
/// it (compact, sorted keys, numbers as spelt).
pub fn admitted_bytes<'a>(raw: &'a [u8], doc: &Json<'_>, changed: bool) -> Cow<'a, [u8]> {
    if !changed && !may_need_admission(raw) {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(doc.to_json_bytes())
    }
}

/// `raw` (a JSON request) as the evaluators must see it: its `trusted` member replaced by
/// `trusted` (the service's facts, a JSON object) or dropped when `trusted` is None, and a
/// non-ASCII `action` string in NFKC form. Inputs that are not objects are returned as they are
/// (they have no members to drop; the policy refuses them). Errors for unreadable JSON when a
/// rewrite may be needed, and for `trusted` that is not a JSON object. Facts for a request with
/// nothing to drop or rewrite are spliced into its bytes ([`spliced`]), after a check that the
/// request is one JSON value, rather than the request read into a tree and written out again.
pub fn admit<'a>(raw: &'a [u8], trusted: Option<&[u8]>) -> Result<Cow<'a, [u8]>> {
    if !may_need_admission(raw) {
        match trusted {
            None => return Ok(Cow::Borrowed(raw)),
            Some(trusted) => {
                if let Some(body) = object_body(raw) {
                    let facts = parse_facts(trusted)?;
                    readable(raw)?;
                    return Ok(Cow::Owned(spliced(body, &facts)));
                }
            }
        }
    }
    let facts = trusted.map(parse_facts).transpose()?;
    let mut doc = match Json::parse(raw) {
        Ok(doc @ Json::Obj(_)) => doc,
        Ok(_) => return Ok(Cow::Borrowed(raw)),
        Err(e) => return Err(Error::InvalidInput(format!("input: {e}"))),
    };
    admit_tree(&mut doc, facts);
    Ok(Cow::Owned(doc.to_json_bytes()))
}

/// An error unless `raw` is one JSON value (read without building it).
fn readable(raw: &[u8]) -> Result<()> {
    serde_json::from_slice::<serde::de::IgnoredAny>(raw)
        .map(|_| ())
        .map_err(|e| Error::InvalidInput(format!("input: {e}")))
}

/// What follows the opening brace of `raw` when `raw` starts (after whitespace) with `{`, and
/// None otherwise. Whitespace after the brace stays in the body.
fn object_body(raw: &[u8]) -> Option<&[u8]> {
    let start = raw.iter().position(|b| !b.is_ascii_whitespace())?;
    match raw.get(start) {
        Some(b'{') => raw.get(start + 1..),
        _ => None,
    }
}

/// A request with nothing for admission to drop or rewrite (see [`may_need_admission`]) and the
/// service's `facts`: `{"trusted":<facts>,` put in place of its opening brace, the rest as sent,
/// without reading it into a tree and writing it out again (which cost about a microsecond per
/// entry of a guard's session history). No member of `body` can be `trusted` in any spelling
/// (no bytes `trusted`, no escapes), and nothing in it can be read two ways (ASCII, no
/// escapes), so the request reaches the evaluators as it would unadmitted, plus the facts. The
/// result is valid JSON exactly when the request was: the facts' member only takes the place of
/// the brace, followed by the request's first member, or by its closing brace when it has none.
fn spliced(body: &[u8], facts: &Json<'_>) -> Vec<u8> {
    let facts = facts.to_json_bytes();
    let mut out = Vec::with_capacity(body.len() + facts.len() + 16);
    out.extend_from_slice(b"{\"trusted\":");
    out.extend_from_slice(&facts);
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    if first.and_then(|i| body.get(i)) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(raw: &str, trusted: Option<&str>) -> String {
        match admit(raw.as_bytes(), trusted.map(str::as_bytes)) {
            Ok(out) => String::from_utf8_lossy(&out).into_owned(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn the_clients_trusted_member_is_dropped_in_every_spelling() {
        assert_eq!(admitted(r#"{"a":1,"trusted":{"n":0}}"#, None), r#"{"a":1}"#);
        assert_eq!(
            admitted(r#"{"a":1,"trus\u0074ed":{"n":0}}"#, None),
            r#"{"a":1}"#
        );
        assert_eq!(
            admitted(r#"{"a":1,"\u0074rusted":{"n":0}}"#, Some(r#"{"n":5}"#)),
            r#"{"a":1,"trusted":{"n":5}}"#
        );
        // A repeated key could hide a second value from this reader: refused.
        assert!(admitted(r#"{"trusted":{},"trusted":{"n":0}}"#, None).starts_with("error"));
        assert!(admitted(r#"{"trusted":{},"trusted":{"n":0}}"#, Some("{}")).starts_with("error"));
    }

    #[test]
    fn the_services_facts_take_the_place_of_the_clients() {
        assert_eq!(
            admitted(
                r#"{"z":true,"trusted":{"request_count_1m":0}}"#,
                Some(r#"{"request_count_1m":101}"#)
            ),
            r#"{"trusted":{"request_count_1m":101},"z":true}"#
        );
        assert_eq!(
            admitted(r#"{}"#, Some(r#"{"x":1}"#)),
            r#"{"trusted":{"x":1}}"#
        );
        assert!(admitted(r#"{}"#, Some("[1]")).starts_with("error"));
        assert!(admitted(r#"{}"#, Some("{")).starts_with("error"));
    }

    #[test]
    fn facts_are_spliced_into_requests_with_nothing_to_drop() {
        let raw = r#"{ "tool" : "read_file", "n": 1.50, "h": [{"a":1},{"a":2}] }"#;
        assert_eq!(
            admitted(raw, Some(r#"{ "b":1, "a":[2] }"#)),
            r#"{"trusted":{"a":[2],"b":1}, "tool" : "read_file", "n": 1.50, "h": [{"a":1},{"a":2}] }"#
        );
        assert_eq!(admitted("{}", Some("{}")), r#"{"trusted":{}}"#);
        assert_eq!(admitted(" {\n} ", Some("{}")), "{\"trusted\":{}\n} ");
        // Unreadable requests and facts that are not an object are refused, as before.
        for raw in ["{", "{,}", "{} {}", r#"{"a":}"#, r#"{"a":1,}"#, "{}x"] {
            assert!(admitted(raw, Some("{}")).starts_with("error"), "{raw}");
        }
        assert!(admitted(r#"{"a":1}"#, Some("[]")).starts_with("error"));
        // Anything with the bytes `trusted`, an escape or non-ASCII text is read and written.
        assert_eq!(
            admitted(r#"{"b":{"trusted":1},"a":1}"#, Some("{}")),
            r#"{"a":1,"b":{"trusted":1},"trusted":{}}"#
        );
        assert_eq!(
            admitted(r#"{"b":"\n","trus\u0074ed":1}"#, Some("{}")),
            r#"{"b":"\n","trusted":{}}"#
        );
    }

    #[test]
    fn numbers_keep_their_literal_text() {
        let raw = r#"{"n":[1.000000000000000000001,1E+400,-0,0.1e2],"trusted":1}"#;
        assert_eq!(
            admitted(raw, None),
            r#"{"n":[1.000000000000000000001,1E+400,-0,0.1e2]}"#
        );
    }

    #[test]
    fn requests_with_nothing_to_change_are_returned_as_they_are() {
        let raw = br#"{ "action" : "data.read_public",  "n": 1.50 }"#;
        assert!(matches!(admit(raw, None), Ok(Cow::Borrowed(_))));
        assert!(matches!(admit(b"[1,2]", None), Ok(Cow::Borrowed(_))));
        assert!(matches!(
            admit(b"\"trusted\"", Some(b"{}")),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn non_ascii_action_names_are_put_in_nfkc() {
        // Full-width letters and the Kelvin sign stand for ASCII letters.
        assert_eq!(
            admitted("{\"action\":\"\u{ff44}ata.exfiltrate\"}", None),
            r#"{"action":"data.exfiltrate"}"#
        );
        assert_eq!(
            admitted("{\"action\":\"networ\u{212a}.raw_socket\"}", None),
            r#"{"action":"networK.raw_socket"}"#
        );
        // Look-alikes from other scripts have no compatibility mapping: they stay, and the
        // constitution's grammar refuses them.
        assert_eq!(
            admitted("{\"action\":\"d\u{0430}ta.read_public\"}", None),
            "{\"action\":\"d\u{0430}ta.read_public\"}"
        );
        // Other fields are not touched.
        assert_eq!(
            admitted("{\"note\":\"\u{ff44}\"}", None),
            "{\"note\":\"\u{ff44}\"}"
        );
    }

    /// Admission on a parsed tree, as `decide` runs it: the bytes the Wasm would read.
    fn admitted_on_tree(raw: &str, trusted: Option<&str>) -> String {
        let facts = match trusted.map(|t| parse_facts(t.as_bytes())).transpose() {
            Ok(f) => f,
            Err(e) => return format!("error: {e}"),
        };
        let mut doc = match Json::parse(raw.as_bytes()) {
            Ok(d) => d,
            Err(e) => return format!("error: {e}"),
        };
        let changed = admit_tree(&mut doc, facts);
        String::from_utf8_lossy(&admitted_bytes(raw.as_bytes(), &doc, changed)).into_owned()
    }

    #[test]
    fn admission_on_the_tree_gives_what_admission_on_bytes_gives() {
        let cases: [(&str, Option<&str>); 14] = [
            (r#"{"a":1,"trusted":{"n":0}}"#, None),
            (r#"{"a":1,"trus\u0074ed":{"n":0}}"#, None),
            (r#"{"a":1,"\u0074rusted":{"n":0}}"#, Some(r#"{"n":5}"#)),
            (r#"{"trusted":{},"trusted":{"n":0}}"#, None),
            (r#"{"trusted":{},"trusted":{"n":0}}"#, Some("{}")),
            (r#"{"z":true,"trusted":{"c":0}}"#, Some(r#"{"c":101}"#)),
            (r#"{}"#, Some(r#"{"x":1}"#)),
            (r#"{}"#, Some("[1]")),
            (
                r#"{"n":[1.000000000000000000001,1E+400,-0,0.1e2],"trusted":1}"#,
                None,
            ),
            (r#"{ "action" : "data.read_public",  "n": 1.50 }"#, None),
            (
                r#"{ "action" : "data.read_public",  "n": 1.50 }"#,
                Some("{}"),
            ),
            ("{\"action\":\"\u{ff44}ata.exfiltrate\"}", None),
            (
                "{\"action\":\"d\u{0430}ta.read_public\",\"x\":\"\\n\"}",
                None,
            ),
            ("{\"note\":\"\u{ff44}\"}", Some("{}")),
        ];
        for (raw, trusted) in cases {
            let on_bytes = admitted(raw, trusted);
            let on_tree = admitted_on_tree(raw, trusted);
            assert_eq!(
                on_bytes.starts_with("error"),
                on_tree.starts_with("error"),
                "{raw}"
            );
            if !on_bytes.starts_with("error") {
                // The same document (the facts may be spliced in ahead of the other members).
                let written = |s: &str| Json::parse(s.as_bytes()).map(|d| d.to_json_bytes());
                assert_eq!(
                    written(&on_bytes),
                    written(&on_tree),
                    "{raw} with {trusted:?}"
                );
                if trusted.is_none() {
                    assert_eq!(on_tree, on_bytes, "{raw}");
                }
            }
        }
    }

    #[test]
    fn canonical_action_names_are_not_copied() {
        for raw in [
            r#"{"action":"data.read_public"}"#,
            // Already NFKC: the grammar refuses it later, admission has nothing to do.
            "{\"action\":\"d\u{0430}ta.read_public\"}",
        ] {
            let mut doc = Json::parse(raw.as_bytes()).unwrap_or(Json::Null);
            assert!(!admit_tree(&mut doc, None), "{raw}");
            assert!(
                matches!(doc.get("action"), Some(Json::Str(Cow::Borrowed(_)))),
                "{raw}"
            );
        }
        let mut doc =
            Json::parse("{\"action\":\"\u{ff44}ata.x\"}".as_bytes()).unwrap_or(Json::Null);
        assert!(admit_tree(&mut doc, None));
        assert_eq!(doc.get("action").and_then(Json::as_str), Some("data.x"));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        for raw in [
            "",
            "{",
            "{\"a\":}",
            "\u{0}",
            "{\"trusted\":1",
            "[[[[[[[[[[[[[[[[[[[[[[",
        ] {
            let _ = admit(raw.as_bytes(), None);
            let _ = admit(raw.as_bytes(), Some(b"{}"));
        }
        let deep = "[".repeat(10_000);
        assert!(admitted(&deep, Some("{}")).starts_with("error"));
    }
}
