//! Admission of a request before any evaluator sees it: what a caller may not decide about its
//! own input. One function, used by every decision path (the REST services pass the facts they
//! built, embedded `decide` passes none).
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

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

use crate::canon::Json;
use crate::error::{Error, Result};

/// The key of the service's facts in the policy input.
pub const TRUSTED_KEY: &str = "trusted";

/// Whether `raw` could hold anything admission changes. False means `raw` is returned as it
/// is: no `trusted` key can be spelt without the bytes `trusted` or an escape, and an action
/// without non-ASCII bytes or escapes is left alone.
fn may_need_admission(raw: &[u8]) -> bool {
    !raw.is_ascii()
        || memchr::memmem::find(raw, b"trusted").is_some()
        || memchr::memchr(b'\\', raw).is_some()
}

/// `raw` (a JSON request) as the evaluators must see it: its `trusted` member replaced by
/// `trusted` (the service's facts, a JSON object) or dropped when `trusted` is None, and a
/// non-ASCII `action` string in NFKC form. Inputs that are not objects are returned as they are
/// (they have no members to drop; the policy refuses them). Errors for unreadable JSON when a
/// rewrite may be needed, and for `trusted` that is not a JSON object.
pub fn admit<'a>(raw: &'a [u8], trusted: Option<&[u8]>) -> Result<Cow<'a, [u8]>> {
    if trusted.is_none() && !may_need_admission(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let facts = match trusted {
        Some(t) => match Json::parse(t) {
            Ok(doc @ Json::Obj(_)) => Some(doc),
            Ok(_) => {
                return Err(Error::InvalidInput(
                    "the trusted document must be a JSON object".into(),
                ))
            }
            Err(e) => {
                return Err(Error::InvalidInput(format!("the trusted document: {e}")));
            }
        },
        None => None,
    };
    let doc = match Json::parse(raw) {
        Ok(doc) => doc,
        Err(e) => return Err(Error::InvalidInput(format!("input: {e}"))),
    };
    let Json::Obj(mut members) = doc else {
        return Ok(Cow::Borrowed(raw));
    };
    members.retain(|(k, _)| k != TRUSTED_KEY);
    if let Some(facts) = facts {
        // Members stay sorted by key, as the reader leaves them.
        let at = members
            .binary_search_by(|(k, _)| k.as_ref().cmp(TRUSTED_KEY))
            .unwrap_or_else(|i| i);
        members.insert(at, (Cow::Borrowed(TRUSTED_KEY), facts));
    }
    for (k, v) in members.iter_mut() {
        if k == "action" {
            if let Json::Str(name) = v {
                if !name.is_ascii() {
                    *v = Json::Str(Cow::Owned(name.nfkc().collect()));
                }
            }
        }
    }
    Ok(Cow::Owned(Json::Obj(members).to_json_bytes()))
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
