//! `glob.match` as OPA's Wasm library does it: the glob is translated to an RE2 expression
//! (`*` any run of non-delimiters, `**` anything, `?` one non-delimiter, `[a-z]`, `[!abc]`,
//! `{a,b}`, `\` escapes) and matched whole. Delimiters default to `.` for an empty array; `null`
//! means none.

use super::{fail, ok, str_operand};
use crate::builtins::{BuiltinResult, Context};
use crate::value::Value;

/// The characters OPA's glob compiler escapes in literal text (it leaves the rest as they are).
const SPECIAL: &str = ".,:\"=<>[]^/\\{}|*+?";

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        if SPECIAL.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
}

struct Translator<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    single: String,
    depth: usize,
}

impl Translator<'_> {
    /// Translates up to the end, or (inside `{}`) up to `,` or `}`, which is left unread.
    fn seq(&mut self, out: &mut String) -> Result<(), String> {
        while let Some(&c) = self.chars.peek() {
            match c {
                ',' | '}' if self.depth > 0 => return Ok(()),
                '*' => {
                    self.chars.next();
                    if self.chars.peek() == Some(&'*') {
                        self.chars.next();
                        out.push_str(".*");
                    } else {
                        out.push_str(&self.single);
                        out.push('*');
                    }
                }
                '?' => {
                    self.chars.next();
                    out.push_str(&self.single);
                }
                '[' => {
                    self.chars.next();
                    self.range(out)?;
                }
                '{' => {
                    self.chars.next();
                    self.depth += 1;
                    out.push('(');
                    loop {
                        self.seq(out)?;
                        match self.chars.next() {
                            Some(',') => out.push('|'),
                            Some('}') => break,
                            _ => return Err("unexpected end of input".into()),
                        }
                    }
                    out.push(')');
                    self.depth -= 1;
                }
                _ => {
                    let text = self.text(|c| matches!(c, '?' | '*' | '[' | '{'), true);
                    escape(&text, out);
                }
            }
        }
        Ok(())
    }

    /// Literal text up to a breaker, `\` escaping the next character.
    fn text(&mut self, breaks: impl Fn(char) -> bool, terms: bool) -> String {
        let mut text = String::new();
        let mut escaped = false;
        while let Some(&c) = self.chars.peek() {
            if !escaped {
                if c == '\\' {
                    escaped = true;
                    self.chars.next();
                    continue;
                }
                if breaks(c) || (terms && self.depth > 0 && matches!(c, ',' | '}')) {
                    break;
                }
            }
            escaped = false;
            text.push(c);
            self.chars.next();
        }
        text
    }

    fn range(&mut self, out: &mut String) -> Result<(), String> {
        out.push('[');
        if self.chars.peek() == Some(&'!') {
            self.chars.next();
            out.push('^');
        }
        let mut ahead = self.chars.clone();
        let lo = ahead.next();
        if let (Some(lo), Some('-')) = (lo, ahead.next()) {
            let hi = ahead.next().ok_or("unexpected end of input")?;
            if ahead.next() != Some(']') {
                return Err("expected close range character".into());
            }
            self.chars = ahead;
            out.push(lo);
            out.push('-');
            out.push(hi);
        } else {
            let text = self.text(|c| c == ']', false);
            if self.chars.next() != Some(']') {
                return Err("unexpected end of input".into());
            }
            escape(&text, out);
        }
        out.push(']');
        Ok(())
    }
}

/// The RE2 expression of `glob` with `delimiters` (`None`: no delimiters).
pub(crate) fn translate(glob: &str, delimiters: Option<&[String]>) -> Result<String, String> {
    let single = match delimiters {
        None => ".".to_owned(),
        Some(ds) => {
            let mut s = "[^".to_owned();
            let default = [".".to_owned()];
            for d in if ds.is_empty() { &default[..] } else { ds } {
                if d.chars().count() != 1 {
                    return Err("delimiter is not a single character".into());
                }
                escape(d, &mut s);
            }
            s.push(']');
            s
        }
    };
    let mut t = Translator {
        chars: glob.chars().peekable(),
        single,
        depth: 0,
    };
    let mut out = "^".to_owned();
    t.seq(&mut out)?;
    out.push('$');
    Ok(out)
}

pub(super) fn glob_match(args: &[Value], _: &Context) -> BuiltinResult {
    let glob = str_operand(args, 1)?;
    let delimiters = match args.get(1) {
        Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|d| d.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| super::BuiltinError("delimiters must be strings".into()))?,
        ),
        _ => return fail("operand 2 must be array or null"),
    };
    let s = str_operand(args, 3)?;
    let re = translate(glob, delimiters.as_deref()).map_err(super::BuiltinError)?;
    let re = super::patterns::cached(&re)?;
    ok(Value::Bool(re.is_match(s)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(glob: &str, delims: Option<&[&str]>, s: &str) -> bool {
        let d: Option<Vec<String>> = delims.map(|d| d.iter().map(|x| (*x).to_owned()).collect());
        let re = translate(glob, d.as_deref()).unwrap();
        super::super::goregex::compile(&re).unwrap().is_match(s)
    }

    #[test]
    fn matches_like_opa() {
        assert!(m("*.github.com", Some(&[]), "api.github.com"));
        assert!(!m("*.github.com", Some(&[]), "api.cdn.github.com"));
        assert!(m("**.github.com", Some(&[]), "api.cdn.github.com"));
        assert!(m("/workspace/**", Some(&["/"]), "/workspace/a/b.txt"));
        assert!(!m("/workspace/*", Some(&["/"]), "/workspace/a/b.txt"));
        assert!(m("{a,b}/?.[0-9]", Some(&["/"]), "b/x.7"));
        assert!(m("[!a]x", None, "bx"));
        assert!(!m("[!a]x", None, "ax"));
        assert!(m("a\\*b", None, "a*b"));
        assert!(translate("{a,b", None).is_err());
        assert!(translate("[abc", None).is_err());
        assert!(translate("x", Some(&["ab".to_owned()])).is_err());
    }
}
