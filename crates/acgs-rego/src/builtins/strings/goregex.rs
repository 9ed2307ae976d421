//! Go's RE2 syntax, checked as Go's parser checks it and rewritten for the `regex` crate.
//!
//! The two dialects mostly agree, but differ where it matters for policies: Go's `\d`, `\w`,
//! `\s` and `\b` are ASCII-only, a `[` inside a class is a literal in Go but opens a nested
//! class in Rust, `&&`/`--`/`~~` are set operators only in Rust, Go has octal and `\Q..\E`
//! escapes, and a `{` that starts no valid repeat count is a literal in Go. Errors are
//! reported with Go's wording (`error parsing regexp: missing closing ]: `[a``).

use std::fmt::Write as _;

use regex::{Regex, RegexBuilder};

/// Go's limit on a single counted repetition.
const MAX_REPEAT: u32 = 1000;
/// Go's limit on nesting depth.
const MAX_NEST: usize = 1000;

fn go_err(code: &str, arg: &str) -> String {
    format!("error parsing regexp: {code}: `{arg}`")
}

/// Compiles a Go regular expression.
pub(crate) fn compile(pattern: &str) -> Result<Regex, String> {
    let translated = translate(pattern)?;
    RegexBuilder::new(&translated)
        .size_limit(64 << 20)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => go_err("expression too large", pattern),
            other => format!("error parsing regexp: {other}"),
        })
}

/// Go's `regexp.QuoteMeta`.
pub(crate) fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A literal character as the `regex` crate reads it, in or out of a class.
fn push_lit(out: &mut String, c: char) {
    if c.is_alphanumeric() || c == '_' || (c as u32 >= 0x80 && !c.is_whitespace()) {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:X}}}", c as u32);
    }
}

const PERL_CLASSES: [(char, &str); 6] = [
    ('d', "0-9"),
    ('s', "\\t\\n\\x0C\\r "),
    ('w', "0-9A-Za-z_"),
    ('D', "^0-9"),
    ('S', "^\\t\\n\\x0C\\r "),
    ('W', "^0-9A-Za-z_"),
];

fn perl_class(c: char) -> Option<&'static str> {
    PERL_CLASSES.iter().find(|(k, _)| *k == c).map(|(_, v)| *v)
}

struct Translator<'a> {
    src: &'a str,
    chars: Vec<(usize, char)>,
    i: usize,
    out: String,
    depth: usize,
    /// Byte offset where the repetition that ended the previous item began, if it was one.
    last_repeat: Option<usize>,
    /// Whether the previous item can take a repetition operator.
    has_operand: bool,
    /// Go's `U` flag. It is resolved here into explicit greediness because a Go flag group
    /// may sit between an item and its repetition (`a(?U)*`), which Rust rejects; the other
    /// flags are then emitted after the repetition, which is equivalent.
    ungreedy: bool,
    /// `ungreedy` as it was outside each open group.
    saved_ungreedy: Vec<bool>,
    /// Flags from a bare `(?flags)` not yet written out.
    pending_flags: String,
    /// Where in `out` the last repeatable item starts, and whether it already ends in a
    /// repetition (Go lets `a*(?i)?` repeat `a*` again; Rust needs a group for that).
    item_start: usize,
    prev_repeat: bool,
    /// `out` positions of the open groups.
    group_starts: Vec<usize>,
}

impl Translator<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).map(|(_, c)| *c)
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).map(|(_, c)| *c)
    }

    fn pos(&self) -> usize {
        self.chars.get(self.i).map_or(self.src.len(), |(p, _)| *p)
    }

    fn text(&self, from: usize, to: usize) -> &str {
        self.src.get(from..to).unwrap_or_default()
    }

    /// Parses `{n}`, `{n,}` or `{n,m}` at the cursor; `None` means the `{` is a literal.
    fn repeat_count(&self) -> Option<(u32, Option<u32>, usize)> {
        let mut k = 1;
        let digits = |k: &mut usize| -> Option<u32> {
            let start = *k;
            // Go reads a count with a leading zero as no count at all.
            if self.peek_at(start) == Some('0')
                && self.peek_at(start + 1).is_some_and(|c| c.is_ascii_digit())
            {
                return None;
            }
            let mut n: u32 = 0;
            while let Some(c) = self.peek_at(*k).filter(char::is_ascii_digit) {
                n = n
                    .saturating_mul(10)
                    .saturating_add(c.to_digit(10).unwrap_or(0));
                *k += 1;
            }
            if *k == start {
                None
            } else {
                Some(n.min(u32::MAX / 2))
            }
        };
        let min = digits(&mut k)?;
        let max = if self.peek_at(k) == Some(',') {
            k += 1;
            if self.peek_at(k) == Some('}') {
                None
            } else {
                Some(digits(&mut k)?)
            }
        } else {
            Some(min)
        };
        if self.peek_at(k) != Some('}') {
            return None;
        }
        Some((min, max, k + 1))
    }

    fn run(mut self) -> Result<String, String> {
        let mut groups: Vec<usize> = Vec::new();
        while let Some(c) = self.peek() {
            let start = self.pos();
            let is_repeat =
                matches!(c, '*' | '+' | '?') || (c == '{' && self.repeat_count().is_some());
            if !is_repeat && c != '(' {
                self.flush_flags();
                self.item_start = self.out.len();
                self.prev_repeat = false;
            }
            match c {
                '*' | '+' | '?' => {
                    self.i += 1;
                    self.repetition(start, c.to_string())?;
                }
                '{' => match self.repeat_count() {
                    Some((min, max, len)) => {
                        self.i += len;
                        if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT || m < min) {
                            return Err(go_err(
                                "invalid repeat count",
                                self.text(start, self.pos()),
                            ));
                        }
                        let op = match max {
                            Some(m) if m == min => format!("{{{min}}}"),
                            Some(m) => format!("{{{min},{m}}}"),
                            None => format!("{{{min},}}"),
                        };
                        self.repetition(start, op)?;
                    }
                    None => {
                        self.i += 1;
                        self.literal('{');
                    }
                },
                '(' => {
                    self.i += 1;
                    let outer = self.ungreedy;
                    let mark = self.out.len();
                    if self.group_open(start)? {
                        let text = self.out.split_off(mark);
                        self.flush_flags();
                        self.group_starts.push(self.out.len());
                        self.out.push_str(&text);
                        self.saved_ungreedy.push(outer);
                        self.depth += 1;
                        if self.depth > MAX_NEST {
                            return Err(go_err("expression nests too deeply", self.src));
                        }
                        groups.push(start);
                        self.has_operand = false;
                    }
                    self.last_repeat = None;
                }
                ')' => {
                    if groups.pop().is_none() {
                        return Err(go_err("unexpected )", self.src));
                    }
                    self.ungreedy = self.saved_ungreedy.pop().unwrap_or(false);
                    self.item_start = self.group_starts.pop().unwrap_or(0);
                    self.depth = self.depth.saturating_sub(1);
                    self.i += 1;
                    self.out.push(')');
                    self.has_operand = true;
                    self.last_repeat = None;
                }
                '|' => {
                    self.i += 1;
                    self.out.push('|');
                    self.has_operand = false;
                    self.last_repeat = None;
                }
                '^' | '$' | '.' => {
                    self.i += 1;
                    self.out.push(c);
                    self.has_operand = true;
                    self.last_repeat = None;
                }
                '[' => {
                    self.class()?;
                    self.has_operand = true;
                    self.last_repeat = None;
                }
                '\\' => {
                    self.escape_outside()?;
                    self.last_repeat = None;
                }
                _ => {
                    self.i += 1;
                    self.literal(c);
                }
            }
        }
        if !groups.is_empty() {
            return Err(go_err("missing closing )", self.src));
        }
        self.out.push_str(&self.pending_flags);
        Ok(self.out)
    }

    fn flush_flags(&mut self) {
        if !self.pending_flags.is_empty() {
            let flags = std::mem::take(&mut self.pending_flags);
            self.out.push_str(&flags);
        }
    }

    fn literal(&mut self, c: char) {
        self.item_start = self.out.len();
        self.prev_repeat = false;
        push_lit(&mut self.out, c);
        self.has_operand = true;
        self.last_repeat = None;
    }

    fn repetition(&mut self, start: usize, op: String) -> Result<(), String> {
        let mut lazy = false;
        if self.peek() == Some('?') {
            self.i += 1;
            lazy = true;
        }
        if let Some(prev) = self.last_repeat {
            return Err(go_err(
                "invalid nested repetition operator",
                self.text(prev, self.pos()),
            ));
        }
        if !self.has_operand {
            return Err(go_err(
                "missing argument to repetition operator",
                self.text(start, self.pos()),
            ));
        }
        if self.prev_repeat {
            self.out
                .insert_str(self.item_start.min(self.out.len()), "(?:");
            self.out.push(')');
        }
        self.out.push_str(&op);
        if lazy != self.ungreedy {
            self.out.push('?');
        }
        self.prev_repeat = true;
        self.last_repeat = Some(start);
        Ok(())
    }

    /// Opens a group after `(`; false for a bare flag setting such as `(?i)`.
    fn group_open(&mut self, start: usize) -> Result<bool, String> {
        if self.peek() != Some('?') {
            self.out.push('(');
            return Ok(true);
        }
        // Named groups: (?P<name>re) and (?<name>re).
        let named = match (self.peek_at(1), self.peek_at(2)) {
            (Some('P'), Some('<')) => Some(3),
            (Some('<'), _) => Some(2),
            _ => None,
        };
        if let Some(skip) = named {
            let name_start = self.i + skip;
            let mut k = name_start;
            while let Some((_, ch)) = self.chars.get(k) {
                if *ch == '>' {
                    break;
                }
                k += 1;
            }
            let Some(&(close_at, _)) = self.chars.get(k) else {
                return Err(go_err(
                    "invalid named capture",
                    self.text(start, self.src.len()),
                ));
            };
            let name_from = self.chars.get(name_start).map_or(close_at, |(p, _)| *p);
            let name = self.text(name_from, close_at).to_owned();
            if name.is_empty() || !name.chars().all(|ch| ch.is_alphanumeric() || ch == '_') {
                return Err(go_err(
                    "invalid named capture",
                    self.text(start, close_at + 1),
                ));
            }
            self.i = k + 1;
            let _ = write!(self.out, "(?P<{name}>");
            return Ok(true);
        }
        // Flag groups: (?flags) and (?flags:re), flags drawn from i, m, s, U.
        let mut k = self.i + 1;
        let mut on = String::new();
        let mut off = String::new();
        let mut ungreedy = self.ungreedy;
        let mut negated = false;
        let mut saw_flag = false;
        loop {
            let Some(&(at, ch)) = self.chars.get(k) else {
                return Err(go_err(
                    "invalid or unsupported Perl syntax",
                    self.text(start, self.src.len()),
                ));
            };
            let through = at + ch.len_utf8();
            match ch {
                'i' | 'm' | 's' | 'U' => {
                    if ch == 'U' {
                        ungreedy = !negated;
                    } else if negated {
                        off.push(ch);
                    } else {
                        on.push(ch);
                    }
                    saw_flag = true;
                }
                '-' if !negated => {
                    negated = true;
                    saw_flag = false;
                }
                ':' | ')' if !negated || saw_flag => {
                    self.i = k + 1;
                    let mut flags = on;
                    if !off.is_empty() {
                        flags.push('-');
                        flags.push_str(&off);
                    }
                    if ch == ':' {
                        let _ = write!(self.out, "(?{flags}:");
                        self.ungreedy = ungreedy;
                    } else {
                        if !flags.is_empty() {
                            let _ = write!(self.pending_flags, "(?{flags})");
                        }
                        self.ungreedy = ungreedy;
                    }
                    return Ok(ch == ':');
                }
                _ => {
                    return Err(go_err(
                        "invalid or unsupported Perl syntax",
                        self.text(start, through),
                    ))
                }
            }
            k += 1;
        }
    }

    /// An escape outside a class.
    fn escape_outside(&mut self) -> Result<(), String> {
        let start = self.pos();
        let Some(c) = self.peek_at(1) else {
            return Err(go_err("trailing backslash at end of expression", ""));
        };
        match c {
            'A' | 'z' => {
                self.i += 2;
                self.out.push('\\');
                self.out.push(c);
                self.has_operand = true;
            }
            'b' | 'B' => {
                self.i += 2;
                let _ = write!(self.out, "(?-u:\\{c})");
                self.has_operand = true;
            }
            'C' => return Err(go_err("invalid escape sequence", "\\C")),
            'Q' => {
                self.i += 2;
                let rest_from = self.pos();
                let rest = self.text(rest_from, self.src.len());
                let (lit, consumed) = match rest.find("\\E") {
                    Some(e) => (rest.get(..e).unwrap_or_default(), e + 2),
                    None => (rest, rest.len()),
                };
                let lit = lit.to_owned();
                for ch in lit.chars() {
                    self.literal(ch);
                }
                let target = rest_from + consumed;
                while self.pos() < target {
                    self.i += 1;
                }
            }
            'd' | 'D' | 's' | 'S' | 'w' | 'W' => {
                self.i += 2;
                let _ = write!(self.out, "[{}]", perl_class(c).unwrap_or_default());
                self.has_operand = true;
            }
            'p' | 'P' => {
                let class = self.unicode_class(start, c)?;
                self.out.push_str(&class);
                self.has_operand = true;
            }
            _ => {
                let ch = self.simple_escape(start)?;
                self.literal(ch);
            }
        }
        Ok(())
    }

    /// `\pN`, `\p{Name}`, `\p{^Name}` and their `\P` negations, cursor on the backslash.
    fn unicode_class(&mut self, start: usize, c: char) -> Result<String, String> {
        let mut negate = c == 'P';
        self.i += 2;
        let name = match self.peek() {
            Some('{') => {
                let from = self.i + 1;
                let mut k = from;
                while self.chars.get(k).is_some_and(|(_, ch)| *ch != '}') {
                    k += 1;
                }
                let Some(&(close_at, _)) = self.chars.get(k) else {
                    return Err(go_err(
                        "invalid character class range",
                        self.text(start, self.src.len()),
                    ));
                };
                let from_at = self.chars.get(from).map_or(close_at, |(p, _)| *p);
                let mut name = self.text(from_at, close_at).to_owned();
                self.i = k + 1;
                if let Some(n) = name.strip_prefix('^') {
                    negate = !negate;
                    name = n.to_owned();
                }
                name
            }
            Some(ch) => {
                self.i += 1;
                ch.to_string()
            }
            None => {
                return Err(go_err(
                    "invalid character class range",
                    self.text(start, self.src.len()),
                ))
            }
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            return Err(go_err(
                "invalid character class range",
                self.text(start, self.pos()),
            ));
        }
        Ok(format!("\\{}{{{name}}}", if negate { 'P' } else { 'p' }))
    }

    /// Escapes valid both in and out of classes: octal, hex, control letters, punctuation.
    fn simple_escape(&mut self, start: usize) -> Result<char, String> {
        let c = self.peek_at(1).unwrap_or('\\');
        let bad = |t: &Self, len: usize| {
            let end = t.chars.get(t.i + len).map_or(t.src.len(), |(p, _)| *p);
            Err(go_err("invalid escape sequence", t.text(start, end)))
        };
        match c {
            '1'..='7' if !self.peek_at(2).is_some_and(|d| ('0'..='7').contains(&d)) => bad(self, 2),
            '0'..='7' => {
                let mut v = 0u32;
                let mut k = 1;
                while k <= 3 {
                    match self.peek_at(k).and_then(|d| d.to_digit(8)) {
                        Some(d) => v = v * 8 + d,
                        None => break,
                    }
                    k += 1;
                }
                self.i += k;
                Ok(char::from_u32(v).unwrap_or('\u{FFFD}'))
            }
            'x' => {
                if self.peek_at(2) == Some('{') {
                    let mut k = 3;
                    let mut v: u32 = 0;
                    let mut n = 0;
                    while let Some(d) = self.peek_at(k).and_then(|d| d.to_digit(16)) {
                        v = v.saturating_mul(16).saturating_add(d);
                        k += 1;
                        n += 1;
                    }
                    if n == 0 || self.peek_at(k) != Some('}') || v > 0x10FFFF {
                        return bad(self, k + 1);
                    }
                    self.i += k + 1;
                    return char::from_u32(v).map_or_else(|| bad(self, 0), Ok);
                }
                let (Some(h), Some(l)) = (
                    self.peek_at(2).and_then(|d| d.to_digit(16)),
                    self.peek_at(3).and_then(|d| d.to_digit(16)),
                ) else {
                    return bad(self, 4.min(self.chars.len() - self.i));
                };
                self.i += 4;
                Ok(char::from_u32(h * 16 + l).unwrap_or('\u{FFFD}'))
            }
            'a' => self.simple(7),
            'f' => self.simple(12),
            'n' => self.simple(10),
            'r' => self.simple(13),
            't' => self.simple(9),
            'v' => self.simple(11),
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => {
                self.i += 2;
                Ok(c)
            }
            _ => bad(self, 2),
        }
    }

    fn simple(&mut self, code: u32) -> Result<char, String> {
        self.i += 2;
        Ok(char::from_u32(code).unwrap_or('\u{FFFD}'))
    }

    /// A bracketed class, rewritten item by item so that nothing in it reads as a Rust
    /// nested class or set operator.
    fn class(&mut self) -> Result<(), String> {
        let start = self.pos();
        self.i += 1;
        let mut out = String::from("[");
        if self.peek() == Some('^') {
            self.i += 1;
            out.push('^');
        }
        let mut first = true;
        let mut items = 0usize;
        loop {
            let Some(c) = self.peek() else {
                return Err(go_err(
                    "missing closing ]",
                    self.text(start, self.src.len()),
                ));
            };
            if c == ']' && !first {
                self.i += 1;
                break;
            }
            first = false;
            let item_start = self.pos();
            // POSIX classes: [:alpha:] and [:^alpha:].
            if c == '[' && self.peek_at(1) == Some(':') {
                let rest = self.text(item_start, self.src.len());
                if let Some(end) = rest.get(2..).and_then(|r| r.find(":]")) {
                    let name = rest.get(2..2 + end).unwrap_or_default();
                    let bare = name.strip_prefix('^').unwrap_or(name);
                    const POSIX: [&str; 14] = [
                        "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower",
                        "print", "punct", "space", "upper", "word", "xdigit",
                    ];
                    if !POSIX.contains(&bare) {
                        return Err(go_err(
                            "invalid character class range",
                            rest.get(..end + 4).unwrap_or(rest),
                        ));
                    }
                    let _ = write!(out, "[:{name}:]");
                    let target = item_start + end + 4;
                    while self.pos() < target {
                        self.i += 1;
                    }
                    items += 1;
                    continue;
                }
            }
            if c == '\\' {
                match self.peek_at(1) {
                    Some(k @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) => {
                        self.i += 2;
                        let _ = write!(out, "[{}]", perl_class(k).unwrap_or_default());
                        items += 1;
                        continue;
                    }
                    Some(k @ ('p' | 'P')) => {
                        let class = self.unicode_class(item_start, k)?;
                        out.push_str(&class);
                        items += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            let lo = self.class_char(start)?;
            // A range, unless the '-' is the last thing before ']'.
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|n| n != ']') {
                self.i += 1;
                let hi = self.class_char(start)?;
                if hi < lo {
                    return Err(go_err(
                        "invalid character class range",
                        self.text(item_start, self.pos()),
                    ));
                }
                push_lit(&mut out, lo);
                out.push('-');
                push_lit(&mut out, hi);
            } else {
                push_lit(&mut out, lo);
            }
            items += 1;
        }
        if items == 0 {
            // Only reachable for "[]" forms Go reads as a literal ']' plus more; keep Rust happy.
            out.push_str("\\x{5D}");
        }
        out.push(']');
        self.out.push_str(&out);
        Ok(())
    }

    fn class_char(&mut self, class_start: usize) -> Result<char, String> {
        match self.peek() {
            None => Err(go_err(
                "missing closing ]",
                self.text(class_start, self.src.len()),
            )),
            Some('\\') => {
                let at = self.pos();
                if self.peek_at(1).is_none() {
                    return Err(go_err("trailing backslash at end of expression", ""));
                }
                self.simple_escape(at)
            }
            Some(c) => {
                self.i += 1;
                Ok(c)
            }
        }
    }
}

/// Rewrites Go syntax into equivalent `regex` crate syntax, or reports Go's parse error.
pub(crate) fn translate(pattern: &str) -> Result<String, String> {
    let t = Translator {
        src: pattern,
        chars: pattern.char_indices().collect(),
        i: 0,
        out: String::with_capacity(pattern.len() + 8),
        depth: 0,
        last_repeat: None,
        has_operand: false,
        ungreedy: false,
        saved_ungreedy: Vec::new(),
        pending_flags: String::new(),
        item_start: 0,
        prev_repeat: false,
        group_starts: Vec::new(),
    };
    t.run()
}

/// Go's `Regexp.Split(s, -1)`.
pub(crate) fn split(re: &Regex, s: &str) -> Vec<String> {
    if s.is_empty() {
        return vec![String::new()];
    }
    let mut out = Vec::new();
    let mut beg = 0;
    let mut end = 0;
    for m in re.find_iter(s) {
        end = m.start();
        if m.end() != 0 {
            out.push(s.get(beg..end).unwrap_or_default().to_owned());
        }
        beg = m.end();
    }
    if end != s.len() {
        out.push(s.get(beg..).unwrap_or_default().to_owned());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn go_errors() {
        for (pat, want) in [
            ("[", "error parsing regexp: missing closing ]: `[`"),
            ("a[bc", "error parsing regexp: missing closing ]: `[bc`"),
            ("(a", "error parsing regexp: missing closing ): `(a`"),
            ("a)", "error parsing regexp: unexpected ): `a)`"),
            (
                "a**",
                "error parsing regexp: invalid nested repetition operator: `**`",
            ),
            (
                "*a",
                "error parsing regexp: missing argument to repetition operator: `*`",
            ),
            (
                "a{1001}",
                "error parsing regexp: invalid repeat count: `{1001}`",
            ),
            (
                "\\k",
                "error parsing regexp: invalid escape sequence: `\\k`",
            ),
            (
                "a\\",
                "error parsing regexp: trailing backslash at end of expression: ``",
            ),
            (
                "[z-a]",
                "error parsing regexp: invalid character class range: `z-a`",
            ),
            (
                "(?=x)",
                "error parsing regexp: invalid or unsupported Perl syntax: `(?=`",
            ),
            (
                "\\8",
                "error parsing regexp: invalid escape sequence: `\\8`",
            ),
            (
                "\\C",
                "error parsing regexp: invalid escape sequence: `\\C`",
            ),
            (
                "(?i",
                "error parsing regexp: invalid or unsupported Perl syntax: `(?i`",
            ),
            (
                "(?i-)",
                "error parsing regexp: invalid or unsupported Perl syntax: `(?i-)`",
            ),
            (
                "(?<=a)",
                "error parsing regexp: invalid named capture: `(?<=a)`",
            ),
            (
                "(?P<a-b>x)",
                "error parsing regexp: invalid named capture: `(?P<a-b>`",
            ),
            (
                "[[:foo:]]",
                "error parsing regexp: invalid character class range: `[:foo:]`",
            ),
            (
                "[a\\",
                "error parsing regexp: trailing backslash at end of expression: ``",
            ),
        ] {
            assert_eq!(compile(pat).unwrap_err(), want, "{pat}");
        }
    }

    #[test]
    fn go_semantics() {
        let m = |p: &str, s: &str| compile(p).unwrap().is_match(s);
        assert!(!m("^\\d$", "\u{0663}"));
        assert!(!m("^\\w+$", "é"));
        assert!(m("^[[]$", "["));
        assert!(m("^[a&&b]+$", "&"));
        assert!(m("^a{$", "a{"));
        assert!(m("^a{2}$", "aa"));
        assert!(m("^\\Q.*\\E$", ".*"));
        assert!(m("^\\101$", "A"));
        assert!(m("^[[:alpha:]]+$", "abc"));
        assert!(m("(?i)ABC", "abc"));
        assert!(m("^(?P<x>a)(?<y>b)$", "ab"));
        assert!(m("^\\pL\\p{Greek}$", "aα"));
        assert!(m("^[\\d-]+$", "1-2"));
        assert!(m("^x\\.y$", "x.y"));
        assert!(m("^\\x41\\x{42}$", "AB"));
        assert!(m("^a]$", "a]"));
        assert!(m("^[]a]+$", "]a"));
        assert!(m("(?m)^b$", "a\nb"));
        assert!(m("^\\<$", "<"));
        assert!(m("^(?i)a(?-i)B$", "AB"));
        assert!(!m("^(?i)a(?-i)B$", "Ab"));
        assert!(m("^a{01}$", "a{01}"));
        assert!(m("^(?:ab)+$", "abab"));
        assert!(m("^(?)a$", "a"));
        assert!(m("\\b*a", "a"));
        assert!(m("^*a", "a"));
        assert!(m("^\\Qab\\E*$", "a"));
        assert_eq!(translate("a+(?-i)?.").unwrap(), "(?:a+)?(?-i).");
        assert_eq!(translate("a(?U)*?b(?-U)+").unwrap(), "a*b+");
    }

    #[test]
    fn splits_like_go() {
        let sp = |p: &str, s: &str| split(&compile(p).unwrap(), s);
        assert_eq!(sp("a", "banana"), ["b", "n", "n", ""]);
        assert_eq!(sp("z+", "pizza"), ["pi", "a"]);
        assert_eq!(sp("", "abc"), ["a", "b", "c"]);
        assert_eq!(sp("^[a-z]+", "foobar baz"), ["", " baz"]);
        assert_eq!(sp("[a-z]+$", "foobar baz"), ["foobar ", ""]);
        assert_eq!(sp("^[a-z ]+$", "foobar baz"), ["", ""]);
        assert_eq!(sp("x*", "axxb"), ["a", "b"]);
        assert_eq!(sp("^[a-z]+\\[[0-9]+\\]$", ""), [""]);
    }

    #[test]
    fn empty_matches_like_go() {
        let re = compile("a*").unwrap();
        let found: Vec<&str> = re.find_iter("baaac").map(|m| m.as_str()).collect();
        assert_eq!(found, ["", "aaa", ""]);
        assert_eq!(re.replace_all("baaac", "-"), "-b-c-");
    }

    /// Compares with Go's `regexp` on a JSON-lines file of `{"p", "s", "r", "err", "find",
    /// "split", "repl"}` records produced by Go. Run with
    /// `ACGS_REGEX_CASES=<file> cargo test -- --ignored`.
    #[test]
    #[ignore = "needs a case file generated with Go"]
    fn matches_go_oracle() {
        let text = std::fs::read_to_string(std::env::var("ACGS_REGEX_CASES").unwrap()).unwrap();
        let mut failures = 0;
        for line in text.lines() {
            let c: serde_json::Value = serde_json::from_str(line).unwrap();
            let (p, s, r) = (
                c["p"].as_str().unwrap(),
                c["s"].as_str().unwrap(),
                c["r"].as_str().unwrap(),
            );
            let want_err = c["err"].as_str().unwrap();
            let report = |what: &str, got: String| {
                eprintln!("{p:?} on {s:?}: {what}\n  want {c}\n  got  {got}")
            };
            match compile(p) {
                Err(e) => {
                    if e != want_err {
                        failures += 1;
                        if failures < 40 {
                            report("error", e);
                        }
                    }
                }
                Ok(re) => {
                    if !want_err.is_empty() {
                        failures += 1;
                        if failures < 40 {
                            report("accepted", translate(p).unwrap());
                        }
                        continue;
                    }
                    let find: Vec<&str> = re.find_iter(s).map(|m| m.as_str()).collect();
                    let sp = split(&re, s);
                    let repl = re.replace_all(s, r).into_owned();
                    let want_find: Vec<&str> = c["find"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap())
                        .collect();
                    let want_split: Vec<&str> = c["split"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap())
                        .collect();
                    if find != want_find || sp != want_split || repl != c["repl"].as_str().unwrap()
                    {
                        failures += 1;
                        if failures < 40 {
                            report(
                                "results",
                                format!("{find:?} {sp:?} {repl:?} via {}", translate(p).unwrap()),
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(failures, 0);
    }
}
