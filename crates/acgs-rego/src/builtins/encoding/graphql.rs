//! `graphql.*`: parsing and validating GraphQL queries and schemas.
//!
//! OPA uses gqlparser v2 and returns its AST marshalled to JSON (Go field names, `Position`
//! dropped, null and empty values pruned), so policies depend on that exact shape, on its
//! error texts, and on which documents it accepts. This module follows gqlparser: the lexer
//! and parser (including where comments attach), schema validation with the built-in prelude
//! merged in, and the default query validation rules run in gqlparser's order.
//!
//! Not implemented: the `OverlappingFieldsCanBeMerged` rule (queries that select one response
//! name for two different fields are accepted).

use std::collections::{BTreeMap, BTreeSet};

use super::{arg, err, BuiltinError, BuiltinResult, Context};
use crate::value::{Number, Value};

/// A gqlparser error: message and, when known, 1-based line and column.
#[derive(Debug, Clone)]
pub(crate) struct GqlError {
    msg: String,
    loc: Option<(usize, usize)>,
}

impl GqlError {
    fn at(loc: Option<(usize, usize)>, msg: impl Into<String>) -> GqlError {
        GqlError {
            msg: msg.into(),
            loc,
        }
    }

    /// gqlerror's `Error()` text.
    fn text(&self) -> String {
        match self.loc {
            Some((l, c)) => format!("input:{l}:{c}: {}", self.msg),
            None => format!("input: {}", self.msg),
        }
    }
}

/// OPA's `formatGqlParserError`: "input:L:C: msg" becomes "msg in GraphQL string at location
/// L:C"; text without a location is wrapped whole.
fn opa_format(text: &str) -> String {
    let parts: Vec<&str> = text.splitn(4, ':').collect();
    if let [_, row, col, msg] = parts.as_slice() {
        if let (Ok(r), Ok(c)) = (row.parse::<u64>(), col.parse::<u64>()) {
            let msg = msg.trim_start_matches(' ');
            let msg = msg.strip_suffix(".\n").unwrap_or(msg);
            return format!("{msg} in GraphQL string at location {r}:{c}");
        }
    }
    format!("GraphQL parse error: {text}")
}

/// A validation error list prints one error per line.
fn format_errors(errors: &[GqlError]) -> String {
    let mut text = String::new();
    for e in errors {
        text.push_str(&e.text());
        text.push('\n');
    }
    opa_format(&text)
}

fn parse_error(e: &GqlError) -> BuiltinError {
    BuiltinError(opa_format(&e.text()))
}

fn query_operand(v: &Value) -> Result<Option<QueryDoc>, GqlError> {
    match v {
        Value::String(s) => parse_query_text(s).map(Some),
        Value::Object(_) => decode_query(v).map(Some),
        _ => Ok(None),
    }
}

fn schema_operand(v: &Value) -> Result<Option<SchemaDoc>, GqlError> {
    match v {
        Value::String(s) => parse_schema_text(s, false).map(Some),
        Value::Object(_) => decode_schema(v).map(Some),
        _ => Ok(None),
    }
}

fn type_error(pos: usize, got: &Value) -> BuiltinError {
    BuiltinError(format!(
        "operand {pos} must be one of {{object, string}} but got {}",
        got.type_name()
    ))
}

pub(super) fn parse_query(args: &[Value], _: &Context) -> BuiltinResult {
    let text = match arg(args, 1)? {
        Value::String(s) => s,
        other => {
            return err(format!(
                "operand 1 must be string but got {}",
                other.type_name()
            ))
        }
    };
    let doc = parse_query_text(text).map_err(|e| parse_error(&e))?;
    Ok(Some(doc.to_value()))
}

pub(super) fn parse_schema(args: &[Value], _: &Context) -> BuiltinResult {
    let text = match arg(args, 1)? {
        Value::String(s) => s,
        other => {
            return err(format!(
                "operand 1 must be string but got {}",
                other.type_name()
            ))
        }
    };
    let doc = parse_schema_text(text, false).map_err(|e| parse_error(&e))?;
    Ok(Some(doc.to_value()))
}

pub(super) fn parse(args: &[Value], _: &Context) -> BuiltinResult {
    let q = arg(args, 1)?;
    let s = arg(args, 2)?;
    let query = query_operand(q)
        .map_err(|e| parse_error(&e))?
        .ok_or_else(|| type_error(1, q))?;
    let schema_doc = schema_operand(s)
        .map_err(|e| parse_error(&e))?
        .ok_or_else(|| type_error(2, s))?;
    let schema_ast = schema_doc.to_value();
    let schema = build_schema(&schema_doc).map_err(|e| {
        BuiltinError(format!(
            "Error in gqlparser SchemaDocument to Schema conversion: {}",
            e.text()
        ))
    })?;
    let query_ast = query.to_value();
    let errors = validate_query(&schema, &query);
    if !errors.is_empty() {
        return Err(BuiltinError(format_errors(&errors)));
    }
    Ok(Some(Value::Array(vec![query_ast, schema_ast])))
}

fn verified(q: &Value, s: &Value) -> Option<(Value, Value)> {
    let query = query_operand(q).ok()??;
    let query_ast = query.to_value();
    let schema_doc = schema_operand(s).ok()??;
    let schema_ast = schema_doc.to_value();
    let schema = build_schema(&schema_doc).ok()?;
    validate_query(&schema, &query)
        .is_empty()
        .then_some((query_ast, schema_ast))
}

pub(super) fn parse_and_verify(args: &[Value], _: &Context) -> BuiltinResult {
    let (q, s) = (arg(args, 1)?, arg(args, 2)?);
    Ok(Some(match verified(q, s) {
        Some((qa, sa)) => Value::Array(vec![Value::Bool(true), qa, sa]),
        None => Value::Array(vec![
            Value::Bool(false),
            Value::Object(BTreeMap::new()),
            Value::Object(BTreeMap::new()),
        ]),
    }))
}

pub(super) fn is_valid(args: &[Value], _: &Context) -> BuiltinResult {
    let (q, s) = (arg(args, 1)?, arg(args, 2)?);
    let ok = (|| {
        let query = query_operand(q).ok()??;
        let schema_doc = schema_operand(s).ok()??;
        let schema = build_schema(&schema_doc).ok()?;
        Some(validate_query(&schema, &query).is_empty())
    })();
    Ok(Some(Value::Bool(ok.unwrap_or(false))))
}

pub(super) fn schema_is_valid(args: &[Value], _: &Context) -> BuiltinResult {
    let ok = match schema_operand(arg(args, 1)?) {
        Ok(Some(doc)) => build_schema(&doc).is_ok(),
        _ => false,
    };
    Ok(Some(Value::Bool(ok)))
}

// Helpers shared by the submodules.

fn obj(entries: Vec<(&str, Value)>) -> Value {
    let mut m = BTreeMap::new();
    for (k, v) in entries {
        // OPA prunes nulls and empty collections from the marshalled AST.
        let keep = match &v {
            Value::Null => false,
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        };
        if keep {
            m.insert(Value::str(k), v);
        }
    }
    Value::Object(m)
}

fn arr<T>(items: &[T], f: impl Fn(&T) -> Value) -> Value {
    Value::Array(
        items
            .iter()
            .map(f)
            .filter(|v| match v {
                Value::Null => false,
                Value::Object(o) => !o.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            })
            .collect(),
    )
}

fn s(v: &str) -> Value {
    Value::str(v)
}

fn int(i: i64) -> Value {
    Value::Number(Number::Int(i))
}

// ---------------------------------------------------------------------------------------------
// Lexer

type Loc = Option<(usize, usize)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tk {
    Invalid,
    Eof,
    Bang,
    Dollar,
    Amp,
    ParenL,
    ParenR,
    Spread,
    Colon,
    Equals,
    At,
    BracketL,
    BracketR,
    BraceL,
    BraceR,
    Pipe,
    Name,
    Int,
    Float,
    Str,
    BlockStr,
    Comment,
}

impl Tk {
    fn text(self) -> &'static str {
        match self {
            Tk::Invalid => "<Invalid>",
            Tk::Eof => "<EOF>",
            Tk::Bang => "!",
            Tk::Dollar => "$",
            Tk::Amp => "&",
            Tk::ParenL => "(",
            Tk::ParenR => ")",
            Tk::Spread => "...",
            Tk::Colon => ":",
            Tk::Equals => "=",
            Tk::At => "@",
            Tk::BracketL => "[",
            Tk::BracketR => "]",
            Tk::BraceL => "{",
            Tk::BraceR => "}",
            Tk::Pipe => "|",
            Tk::Name => "Name",
            Tk::Int => "Int",
            Tk::Float => "Float",
            Tk::Str => "String",
            Tk::BlockStr => "BlockString",
            Tk::Comment => "Comment",
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tk,
    value: String,
    line: usize,
    col: usize,
}

impl Token {
    fn loc(&self) -> Loc {
        Some((self.line, self.col))
    }

    /// gqlparser's `Token.String()`.
    fn describe(&self) -> String {
        if self.value.is_empty() {
            self.kind.text().to_owned()
        } else {
            format!("{} {}", self.kind.text(), go_quote(&self.value))
        }
    }
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if (0x80..0xa0).contains(&(c as u32))
                || matches!(c, '\u{ad}' | '\u{2028}' | '\u{2029}' | '\u{feff}') =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Lexer<'a> {
    input: &'a str,
    start: usize,
    start_runes: usize,
    end: usize,
    end_runes: usize,
    line: usize,
    line_start_runes: usize,
}

impl<'a> Lexer<'a> {
    fn new(input: &'a str) -> Lexer<'a> {
        Lexer {
            input,
            start: 0,
            start_runes: 0,
            end: 0,
            end_runes: 0,
            line: 1,
            line_start_runes: 0,
        }
    }

    fn byte(&self, i: usize) -> Option<u8> {
        self.input.as_bytes().get(i).copied()
    }

    fn rune_at(&self, i: usize) -> (char, usize) {
        match self.input.get(i..).and_then(|r| r.chars().next()) {
            Some(c) => (c, c.len_utf8()),
            None => ('\u{FFFD}', 1),
        }
    }

    fn token(&self, kind: Tk, value: String) -> Result<Token, (Token, GqlError)> {
        Ok(Token {
            kind,
            value,
            line: self.line,
            // A block string spanning lines ends on a later line than it starts.
            col: (self.start_runes + 1).saturating_sub(self.line_start_runes),
        })
    }

    fn error(&self, msg: String) -> Result<Token, (Token, GqlError)> {
        let col = (self.end_runes + 1).saturating_sub(self.line_start_runes);
        Err((
            Token {
                kind: Tk::Invalid,
                value: String::new(),
                line: self.line,
                col,
            },
            GqlError::at(Some((self.line, col)), msg),
        ))
    }

    fn slice(&self, a: usize, b: usize) -> String {
        self.input.get(a..b).unwrap_or_default().to_owned()
    }

    fn read(&mut self) -> Result<Token, (Token, GqlError)> {
        self.ws();
        self.start = self.end;
        self.start_runes = self.end_runes;
        let Some(r) = self.byte(self.start) else {
            return self.token(Tk::Eof, String::new());
        };
        self.end += 1;
        self.end_runes += 1;
        let punct = match r {
            b'!' => Some(Tk::Bang),
            b'$' => Some(Tk::Dollar),
            b'&' => Some(Tk::Amp),
            b'(' => Some(Tk::ParenL),
            b')' => Some(Tk::ParenR),
            b':' => Some(Tk::Colon),
            b'=' => Some(Tk::Equals),
            b'@' => Some(Tk::At),
            b'[' => Some(Tk::BracketL),
            b']' => Some(Tk::BracketR),
            b'{' => Some(Tk::BraceL),
            b'}' => Some(Tk::BraceR),
            b'|' => Some(Tk::Pipe),
            _ => None,
        };
        if let Some(k) = punct {
            return self.token(k, String::new());
        }
        match r {
            b'.' if self.input.get(self.start..self.start + 3) == Some("...") => {
                self.end += 2;
                self.end_runes += 2;
                return self.token(Tk::Spread, String::new());
            }
            b'#' => return self.read_comment(),
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => return self.read_name(),
            b'-' | b'0'..=b'9' => return self.read_number(),
            b'"' => {
                if self.input.get(self.start..self.start + 3) == Some("\"\"\"") {
                    return self.read_block_string();
                }
                return self.read_string();
            }
            _ => {}
        }
        self.end -= 1;
        self.end_runes -= 1;
        if r < 0x20 && r != b'\t' && r != b'\n' && r != b'\r' {
            return self.error(format!(
                "Cannot contain the invalid character \"\\u{:04x}\"",
                r
            ));
        }
        if r == b'\'' {
            return self.error(
                "Unexpected single quote character ('), did you mean to use a double quote (\")?"
                    .to_owned(),
            );
        }
        // gqlparser formats the first byte of the input as a character, even mid-sequence.
        self.error(format!(
            "Cannot parse the unexpected character \"{}\".",
            char::from(r)
        ))
    }

    fn ws(&mut self) {
        while let Some(b) = self.byte(self.end) {
            match b {
                b'\t' | b' ' | b',' => {
                    self.end += 1;
                    self.end_runes += 1;
                }
                b'\n' => {
                    self.end += 1;
                    self.end_runes += 1;
                    self.line += 1;
                    self.line_start_runes = self.end_runes;
                }
                b'\r' => {
                    self.end += 1;
                    self.end_runes += 1;
                    self.line += 1;
                    self.line_start_runes = self.end_runes;
                    if self.byte(self.end) == Some(b'\n') {
                        self.end += 1;
                        self.end_runes += 1;
                    }
                }
                0xef if self.byte(self.end + 1) == Some(0xbb)
                    && self.byte(self.end + 2) == Some(0xbf) =>
                {
                    self.end += 3;
                    self.end_runes += 1;
                }
                _ => return,
            }
        }
    }

    fn read_comment(&mut self) -> Result<Token, (Token, GqlError)> {
        while self.end < self.input.len() {
            let (c, w) = self.rune_at(self.end);
            if (c as u32) > 0x1f || c == '\t' {
                self.end += w;
                self.end_runes += 1;
            } else {
                break;
            }
        }
        let v = self.slice(self.start, self.end);
        self.token(Tk::Comment, v)
    }

    fn read_name(&mut self) -> Result<Token, (Token, GqlError)> {
        while let Some(b) = self.byte(self.end) {
            if b.is_ascii_alphanumeric() || b == b'_' {
                self.end += 1;
                self.end_runes += 1;
            } else {
                break;
            }
        }
        let v = self.slice(self.start, self.end);
        self.token(Tk::Name, v)
    }

    fn accept(&mut self, set: &[u8]) -> bool {
        match self.byte(self.end) {
            Some(b) if set.contains(&b) => {
                self.end += 1;
                self.end_runes += 1;
                true
            }
            _ => false,
        }
    }

    fn digits(&mut self) -> usize {
        let mut n = 0;
        while self.byte(self.end).is_some_and(|b| b.is_ascii_digit()) {
            self.end += 1;
            self.end_runes += 1;
            n += 1;
        }
        n
    }

    fn describe_next(&self) -> String {
        match self.byte(self.end) {
            Some(b) => format!("\"{}\"", char::from(b)),
            None => "<EOF>".to_owned(),
        }
    }

    fn read_number(&mut self) -> Result<Token, (Token, GqlError)> {
        let mut float = false;
        self.end -= 1;
        self.end_runes -= 1;
        self.accept(b"-");
        if self.accept(b"0") {
            let n = self.digits();
            if n != 0 {
                self.end -= n;
                self.end_runes -= n;
                return self.error(format!(
                    "Invalid number, unexpected digit after 0: {}.",
                    self.describe_next()
                ));
            }
        } else if self.digits() == 0 {
            return self.error(format!(
                "Invalid number, expected digit but got: {}.",
                self.describe_next()
            ));
        }
        if self.accept(b".") {
            float = true;
            if self.digits() == 0 {
                return self.error(format!(
                    "Invalid number, expected digit but got: {}.",
                    self.describe_next()
                ));
            }
        }
        if self.accept(b"eE") {
            float = true;
            self.accept(b"-+");
            if self.digits() == 0 {
                return self.error(format!(
                    "Invalid number, expected digit but got: {}.",
                    self.describe_next()
                ));
            }
        }
        let v = self.slice(self.start, self.end);
        self.token(if float { Tk::Float } else { Tk::Int }, v)
    }

    fn read_string(&mut self) -> Result<Token, (Token, GqlError)> {
        let len = self.input.len();
        let mut buf: Option<String> = None;
        self.start += 1;
        self.start_runes += 1;
        while self.end < len {
            let Some(r) = self.byte(self.end) else { break };
            if r == b'\n' || r == b'\r' {
                break;
            }
            if r < 0x20 && r != b'\t' {
                return self.error(format!(
                    "Invalid character within String: \"\\u{:04x}\".",
                    r
                ));
            }
            match r {
                b'"' => {
                    let v = buf
                        .take()
                        .unwrap_or_else(|| self.slice(self.start, self.end));
                    let t = self.token(Tk::Str, v);
                    self.end += 1;
                    self.end_runes += 1;
                    return t;
                }
                b'\\' => {
                    if self.end + 1 >= len {
                        self.end += 1;
                        self.end_runes += 1;
                        return self.error("Invalid character escape sequence.".to_owned());
                    }
                    let b = buf.get_or_insert_with(|| {
                        self.input
                            .get(self.start..self.end)
                            .unwrap_or_default()
                            .to_owned()
                    });
                    let esc = self.byte(self.end + 1).unwrap_or(0);
                    if esc == b'u' {
                        if self.byte(self.end + 2) == Some(b'{') {
                            let rest = self.input.get(self.end + 3..).unwrap_or_default();
                            let (v, n, ok) = unhex_braced(rest);
                            if !ok {
                                self.end += 1;
                                self.end_runes += 1;
                                let seq = self.slice(self.end, self.end + 2 + n);
                                return self
                                    .error(format!("Invalid character escape sequence: \\{seq}."));
                            }
                            b.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
                            self.end += 3 + n;
                            self.end_runes += 3 + n;
                            continue;
                        }
                        if self.end + 6 >= len {
                            self.end += 1;
                            self.end_runes += 1;
                            let seq = self.slice(self.end, len);
                            return self
                                .error(format!("Invalid character escape sequence: \\{seq}."));
                        }
                        let Some(mut v) =
                            self.input.get(self.end + 2..self.end + 6).and_then(unhex)
                        else {
                            self.end += 1;
                            self.end_runes += 1;
                            let seq = self.slice(self.end, self.end + 5);
                            return self
                                .error(format!("Invalid character escape sequence: \\{seq}."));
                        };
                        self.end += 6;
                        self.end_runes += 6;
                        if (0xD800..0xDC00).contains(&v) && self.end + 6 < len {
                            let next = self.input.get(self.end..self.end + 6).unwrap_or_default();
                            if let Some(lo) = next.strip_prefix("\\u").and_then(unhex) {
                                if (0xDC00..=0xDFFF).contains(&lo) {
                                    v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                                    self.end += 6;
                                    self.end_runes += 6;
                                }
                            }
                        }
                        b.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
                    } else {
                        let c = match esc {
                            b'"' => '"',
                            b'/' => '/',
                            b'\\' => '\\',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            _ => {
                                self.end += 1;
                                self.end_runes += 1;
                                return self.error(format!(
                                    "Invalid character escape sequence: \\{}.",
                                    char::from(esc)
                                ));
                            }
                        };
                        b.push(c);
                        self.end += 2;
                        self.end_runes += 2;
                    }
                }
                _ => {
                    let (c, w) = if r >= 127 {
                        self.rune_at(self.end)
                    } else {
                        (char::from(r), 1)
                    };
                    self.end += w;
                    self.end_runes += 1;
                    if let Some(b) = buf.as_mut() {
                        b.push(c);
                    }
                }
            }
        }
        self.error("Unterminated string.".to_owned())
    }

    fn read_block_string(&mut self) -> Result<Token, (Token, GqlError)> {
        let len = self.input.len();
        let mut buf = String::new();
        self.start += 3;
        self.start_runes += 3;
        self.end += 2;
        self.end_runes += 2;
        while self.end < len {
            let Some(r) = self.byte(self.end) else { break };
            if r == b'"' {
                let mut quotes = 1;
                while self.byte(self.end + quotes) == Some(b'"') {
                    quotes += 1;
                }
                if quotes >= 3 {
                    for _ in 0..quotes - 3 {
                        buf.push('"');
                    }
                    let t = self.token(Tk::BlockStr, block_string_value(&buf));
                    self.end += quotes;
                    self.end_runes += quotes;
                    return t;
                }
            }
            if r < 0x20 && r != b'\t' && r != b'\n' && r != b'\r' {
                return self.error(format!(
                    "Invalid character within String: \"\\u{:04x}\".",
                    r
                ));
            }
            if r == b'\\' && self.input.get(self.end..self.end + 4) == Some("\\\"\"\"") {
                buf.push_str("\"\"\"");
                self.end += 4;
                self.end_runes += 4;
            } else if r == b'\r' {
                if self.byte(self.end + 1) == Some(b'\n') {
                    self.end += 1;
                    self.end_runes += 1;
                }
                buf.push('\n');
                self.end += 1;
                self.end_runes += 1;
                self.line += 1;
                self.line_start_runes = self.end_runes;
            } else {
                let (c, w) = if r >= 127 {
                    self.rune_at(self.end)
                } else {
                    (char::from(r), 1)
                };
                self.end += w;
                self.end_runes += 1;
                buf.push(c);
                if r == b'\n' {
                    self.line += 1;
                    self.line_start_runes = self.end_runes;
                }
            }
        }
        self.error("Unterminated string.".to_owned())
    }
}

fn unhex(s: &str) -> Option<u32> {
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

fn unhex_braced(s: &str) -> (u32, usize, bool) {
    let b = s.as_bytes();
    let mut v: u32 = 0;
    let mut n = 0;
    while n < b.len() && n <= 8 {
        let c = b.get(n).copied().unwrap_or(0);
        if c == b'}' {
            n += 1;
            let valid = n != 1 && char::from_u32(v).is_some();
            return if valid { (v, n, true) } else { (0, n, false) };
        }
        let Some(d) = char::from(c).to_digit(16) else {
            return (0, n, false);
        };
        v = v.wrapping_shl(4) | d;
        n += 1;
    }
    (0, n, false)
}

/// gqlparser's block string dedent (note: the first line counts towards the common indent).
fn block_string_value(raw: &str) -> String {
    let leading = |l: &str| l.find(|c| c != ' ' && c != '\t');
    let mut lines: Vec<String> = raw.split('\n').map(str::to_owned).collect();
    let common = lines.iter().filter_map(|l| leading(l)).min();
    if let Some(common) = common {
        for l in lines.iter_mut().skip(1) {
            *l = l.get(common..).map(str::to_owned).unwrap_or_default();
        }
    }
    let first = lines
        .iter()
        .position(|l| leading(l).is_some())
        .unwrap_or(lines.len());
    let last = lines
        .iter()
        .rposition(|l| leading(l).is_some())
        .map_or(first, |i| i + 1);
    lines
        .get(first..last.max(first))
        .map(|ls| ls.join("\n"))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// AST (gqlparser's `ast` package, as marshalled by OPA)

type Comments = Option<Vec<String>>;

#[derive(Debug, Clone, Default)]
struct Ty {
    named: String,
    elem: Option<Box<Ty>>,
    non_null: bool,
    loc: Loc,
}

impl Ty {
    fn name(&self) -> &str {
        match &self.elem {
            Some(e) if self.named.is_empty() => e.name(),
            _ => &self.named,
        }
    }

    fn text(&self) -> String {
        let bang = if self.non_null { "!" } else { "" };
        match &self.elem {
            Some(e) if self.named.is_empty() => format!("[{}]{bang}", e.text()),
            _ => format!("{}{bang}", self.named),
        }
    }

    /// gqlparser's `Type.IsCompatible`.
    fn is_compatible(&self, other: &Ty) -> bool {
        if self.named != other.named {
            return false;
        }
        match (&self.elem, &other.elem) {
            (Some(_), None) => return false,
            (Some(a), Some(b)) if !a.is_compatible(b) => return false,
            _ => {}
        }
        !other.non_null || self.non_null
    }
}

const K_VARIABLE: i64 = 0;
const K_INT: i64 = 1;
const K_FLOAT: i64 = 2;
const K_STRING: i64 = 3;
const K_BLOCK: i64 = 4;
const K_BOOLEAN: i64 = 5;
const K_NULL: i64 = 6;
const K_ENUM: i64 = 7;
const K_LIST: i64 = 8;
const K_OBJECT: i64 = 9;

#[derive(Debug, Clone, Default)]
struct Val {
    raw: String,
    children: Vec<ChildVal>,
    kind: i64,
    loc: Loc,
    comment: Comments,
}

#[derive(Debug, Clone, Default)]
struct ChildVal {
    name: String,
    value: Option<Val>,
    loc: Loc,
    comment: Comments,
}

impl Val {
    /// gqlparser's `Value.String()`.
    fn text(&self) -> String {
        match self.kind {
            K_VARIABLE => format!("${}", self.raw),
            K_STRING | K_BLOCK => quote_gql(&self.raw),
            K_LIST => {
                let items: Vec<String> = self
                    .children
                    .iter()
                    .map(|c| c.value.as_ref().map_or("<nil>".to_owned(), Val::text))
                    .collect();
                format!("[{}]", items.join(","))
            }
            K_OBJECT => {
                let items: Vec<String> = self
                    .children
                    .iter()
                    .map(|c| {
                        format!(
                            "{}:{}",
                            c.name,
                            c.value.as_ref().map_or("<nil>".to_owned(), Val::text)
                        )
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }
            _ => self.raw.clone(),
        }
    }
}

/// gqlparser's `quoteString`.
fn quote_gql(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || (0x80..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\u00{:02X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Debug, Clone, Default)]
struct Argument {
    name: String,
    value: Option<Val>,
    loc: Loc,
    comment: Comments,
}

#[derive(Debug, Clone, Default)]
struct Directive {
    name: String,
    args: Vec<Argument>,
    loc: Loc,
}

#[derive(Debug, Clone, Default)]
struct VarDef {
    description: String,
    variable: String,
    ty: Ty,
    default: Option<Val>,
    directives: Vec<Directive>,
    loc: Loc,
    comment: Comments,
    used: bool,
}

#[derive(Debug, Clone)]
enum Sel {
    Field(Field),
    Spread(Spread),
    Inline(Inline),
}

#[derive(Debug, Clone, Default)]
struct Field {
    alias: String,
    name: String,
    args: Vec<Argument>,
    directives: Vec<Directive>,
    sel: Vec<Sel>,
    loc: Loc,
    comment: Comments,
}

#[derive(Debug, Clone, Default)]
struct Spread {
    name: String,
    directives: Vec<Directive>,
    loc: Loc,
    comment: Comments,
}

#[derive(Debug, Clone, Default)]
struct Inline {
    type_cond: String,
    directives: Vec<Directive>,
    sel: Vec<Sel>,
    loc: Loc,
    comment: Comments,
}

#[derive(Debug, Clone, Default)]
struct Operation {
    description: String,
    operation: String,
    name: String,
    var_defs: Vec<VarDef>,
    directives: Vec<Directive>,
    sel: Vec<Sel>,
    loc: Loc,
    comment: Comments,
}

#[derive(Debug, Clone, Default)]
struct Fragment {
    description: String,
    name: String,
    var_defs: Vec<VarDef>,
    type_cond: String,
    directives: Vec<Directive>,
    sel: Vec<Sel>,
    loc: Loc,
    comment: Comments,
}

#[derive(Debug, Clone, Default)]
struct QueryDoc {
    operations: Vec<Operation>,
    fragments: Vec<Fragment>,
}

#[derive(Debug, Clone, Default)]
struct FieldDef {
    description: String,
    name: String,
    args: Vec<ArgDef>,
    default: Option<Val>,
    ty: Ty,
    directives: Vec<Directive>,
    loc: Loc,
    before: Comments,
    after: Comments,
}

#[derive(Debug, Clone, Default)]
struct ArgDef {
    description: String,
    name: String,
    default: Option<Val>,
    ty: Ty,
    directives: Vec<Directive>,
    loc: Loc,
    before: Comments,
    after: Comments,
}

#[derive(Debug, Clone, Default)]
struct EnumVal {
    description: String,
    name: String,
    directives: Vec<Directive>,
    loc: Loc,
    before: Comments,
    after: Comments,
}

#[derive(Debug, Clone, Default)]
struct Def {
    kind: String,
    description: String,
    name: String,
    directives: Vec<Directive>,
    interfaces: Vec<String>,
    fields: Vec<FieldDef>,
    types: Vec<String>,
    enum_values: Vec<EnumVal>,
    loc: Loc,
    type_locs: Vec<Loc>,
    builtin: bool,
    before: Comments,
    after: Comments,
    end: Comments,
}

impl Def {
    fn is_leaf(&self) -> bool {
        self.kind == "ENUM" || self.kind == "SCALAR"
    }
    fn is_abstract(&self) -> bool {
        self.kind == "INTERFACE" || self.kind == "UNION"
    }
    fn is_composite(&self) -> bool {
        matches!(self.kind.as_str(), "OBJECT" | "INTERFACE" | "UNION")
    }
    fn is_input(&self) -> bool {
        matches!(self.kind.as_str(), "SCALAR" | "ENUM" | "INPUT_OBJECT")
    }
    fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, Clone, Default)]
struct DirDef {
    description: String,
    name: String,
    args: Vec<ArgDef>,
    directives: Vec<Directive>,
    locations: Vec<String>,
    repeatable: bool,
    loc: Loc,
    before: Comments,
    after: Comments,
}

#[derive(Debug, Clone, Default)]
struct OpType {
    operation: String,
    ty: String,
    loc: Loc,
    comment: Comments,
}

#[derive(Debug, Clone, Default)]
struct SchemaDef {
    description: String,
    directives: Vec<Directive>,
    op_types: Vec<OpType>,
    loc: Loc,
    before: Comments,
    after: Comments,
    end: Comments,
}

#[derive(Debug, Clone, Default)]
struct SchemaDoc {
    schema: Vec<SchemaDef>,
    schema_ext: Vec<SchemaDef>,
    directives: Vec<DirDef>,
    directive_exts: Vec<DirDef>,
    defs: Vec<Def>,
    exts: Vec<Def>,
    comment: Comments,
}

// Encoding, in the shape OPA returns.

fn enc_comments(c: &Comments) -> Value {
    match c {
        Some(list) => obj(vec![("List", arr(list, |v| obj(vec![("Value", s(v))])))]),
        None => Value::Null,
    }
}

fn enc_ty(t: &Ty) -> Value {
    obj(vec![
        ("NamedType", s(&t.named)),
        ("Elem", t.elem.as_ref().map_or(Value::Null, |e| enc_ty(e))),
        ("NonNull", Value::Bool(t.non_null)),
    ])
}

fn enc_val(v: &Option<Val>) -> Value {
    let Some(v) = v else { return Value::Null };
    obj(vec![
        ("Raw", s(&v.raw)),
        (
            "Children",
            arr(&v.children, |c| {
                obj(vec![
                    ("Name", s(&c.name)),
                    ("Value", enc_val(&c.value)),
                    ("Comment", enc_comments(&c.comment)),
                ])
            }),
        ),
        ("Kind", int(v.kind)),
        ("Comment", enc_comments(&v.comment)),
        ("ExpectedTypeHasDefault", Value::Bool(false)),
    ])
}

fn enc_args(a: &[Argument]) -> Value {
    arr(a, |a| {
        obj(vec![
            ("Name", s(&a.name)),
            ("Value", enc_val(&a.value)),
            ("Comment", enc_comments(&a.comment)),
        ])
    })
}

fn enc_dirs(d: &[Directive]) -> Value {
    arr(d, |d| {
        obj(vec![
            ("Name", s(&d.name)),
            ("Arguments", enc_args(&d.args)),
            ("Location", s("")),
        ])
    })
}

fn enc_var_defs(v: &[VarDef]) -> Value {
    arr(v, |v| {
        obj(vec![
            ("Description", s(&v.description)),
            ("Variable", s(&v.variable)),
            ("Type", enc_ty(&v.ty)),
            ("DefaultValue", enc_val(&v.default)),
            ("Directives", enc_dirs(&v.directives)),
            ("Comment", enc_comments(&v.comment)),
            ("Used", Value::Bool(v.used)),
        ])
    })
}

fn enc_sel(sel: &[Sel]) -> Value {
    arr(sel, |x| match x {
        Sel::Field(f) => obj(vec![
            ("Alias", s(&f.alias)),
            ("Name", s(&f.name)),
            ("Arguments", enc_args(&f.args)),
            ("Directives", enc_dirs(&f.directives)),
            ("SelectionSet", enc_sel(&f.sel)),
            ("Comment", enc_comments(&f.comment)),
        ]),
        Sel::Spread(f) => obj(vec![
            ("Name", s(&f.name)),
            ("Directives", enc_dirs(&f.directives)),
            ("Comment", enc_comments(&f.comment)),
        ]),
        Sel::Inline(f) => obj(vec![
            ("TypeCondition", s(&f.type_cond)),
            ("Directives", enc_dirs(&f.directives)),
            ("SelectionSet", enc_sel(&f.sel)),
            ("Comment", enc_comments(&f.comment)),
        ]),
    })
}

impl QueryDoc {
    fn to_value(&self) -> Value {
        obj(vec![
            (
                "Operations",
                arr(&self.operations, |o| {
                    obj(vec![
                        ("Description", s(&o.description)),
                        ("Operation", s(&o.operation)),
                        ("Name", s(&o.name)),
                        ("VariableDefinitions", enc_var_defs(&o.var_defs)),
                        ("Directives", enc_dirs(&o.directives)),
                        ("SelectionSet", enc_sel(&o.sel)),
                        ("Comment", enc_comments(&o.comment)),
                    ])
                }),
            ),
            (
                "Fragments",
                arr(&self.fragments, |f| {
                    obj(vec![
                        ("Description", s(&f.description)),
                        ("Name", s(&f.name)),
                        ("VariableDefinition", enc_var_defs(&f.var_defs)),
                        ("TypeCondition", s(&f.type_cond)),
                        ("Directives", enc_dirs(&f.directives)),
                        ("SelectionSet", enc_sel(&f.sel)),
                        ("Comment", enc_comments(&f.comment)),
                    ])
                }),
            ),
        ])
    }
}

fn enc_arg_defs(a: &[ArgDef]) -> Value {
    arr(a, |a| {
        obj(vec![
            ("Description", s(&a.description)),
            ("Name", s(&a.name)),
            ("DefaultValue", enc_val(&a.default)),
            ("Type", enc_ty(&a.ty)),
            ("Directives", enc_dirs(&a.directives)),
            ("BeforeDescriptionComment", enc_comments(&a.before)),
            ("AfterDescriptionComment", enc_comments(&a.after)),
        ])
    })
}

fn enc_defs(defs: &[Def]) -> Value {
    arr(defs, |d| {
        obj(vec![
            ("Kind", s(&d.kind)),
            ("Description", s(&d.description)),
            ("Name", s(&d.name)),
            ("Directives", enc_dirs(&d.directives)),
            ("Interfaces", arr(&d.interfaces, |x| s(x))),
            (
                "Fields",
                arr(&d.fields, |f| {
                    obj(vec![
                        ("Description", s(&f.description)),
                        ("Name", s(&f.name)),
                        ("Arguments", enc_arg_defs(&f.args)),
                        ("DefaultValue", enc_val(&f.default)),
                        ("Type", enc_ty(&f.ty)),
                        ("Directives", enc_dirs(&f.directives)),
                        ("BeforeDescriptionComment", enc_comments(&f.before)),
                        ("AfterDescriptionComment", enc_comments(&f.after)),
                    ])
                }),
            ),
            ("Types", arr(&d.types, |x| s(x))),
            (
                "EnumValues",
                arr(&d.enum_values, |e| {
                    obj(vec![
                        ("Description", s(&e.description)),
                        ("Name", s(&e.name)),
                        ("Directives", enc_dirs(&e.directives)),
                        ("BeforeDescriptionComment", enc_comments(&e.before)),
                        ("AfterDescriptionComment", enc_comments(&e.after)),
                    ])
                }),
            ),
            ("BuiltIn", Value::Bool(d.builtin)),
            ("BeforeDescriptionComment", enc_comments(&d.before)),
            ("AfterDescriptionComment", enc_comments(&d.after)),
            ("EndOfDefinitionComment", enc_comments(&d.end)),
        ])
    })
}

fn enc_dir_defs(defs: &[DirDef]) -> Value {
    arr(defs, |d| {
        obj(vec![
            ("Description", s(&d.description)),
            ("Name", s(&d.name)),
            ("Arguments", enc_arg_defs(&d.args)),
            ("Directives", enc_dirs(&d.directives)),
            ("Locations", arr(&d.locations, |x| s(x))),
            ("IsRepeatable", Value::Bool(d.repeatable)),
            ("BeforeDescriptionComment", enc_comments(&d.before)),
            ("AfterDescriptionComment", enc_comments(&d.after)),
        ])
    })
}

fn enc_schema_defs(defs: &[SchemaDef]) -> Value {
    arr(defs, |d| {
        obj(vec![
            ("Description", s(&d.description)),
            ("Directives", enc_dirs(&d.directives)),
            (
                "OperationTypes",
                arr(&d.op_types, |o| {
                    obj(vec![
                        ("Operation", s(&o.operation)),
                        ("Type", s(&o.ty)),
                        ("Comment", enc_comments(&o.comment)),
                    ])
                }),
            ),
            ("BeforeDescriptionComment", enc_comments(&d.before)),
            ("AfterDescriptionComment", enc_comments(&d.after)),
            ("EndOfDefinitionComment", enc_comments(&d.end)),
        ])
    })
}

impl SchemaDoc {
    fn to_value(&self) -> Value {
        obj(vec![
            ("Schema", enc_schema_defs(&self.schema)),
            ("SchemaExtension", enc_schema_defs(&self.schema_ext)),
            ("Directives", enc_dir_defs(&self.directives)),
            ("DirectiveExtensions", enc_dir_defs(&self.directive_exts)),
            ("Definitions", enc_defs(&self.defs)),
            ("Extensions", enc_defs(&self.exts)),
            ("Comment", enc_comments(&self.comment)),
        ])
    }
}

// ---------------------------------------------------------------------------------------------
// Parser (gqlparser's, including where it attaches comments)

/// gqlparser's nesting limit for selection sets, lists, objects and list types.
const MAX_NESTING: usize = 1000;

struct Parser<'a> {
    lexer: Lexer<'a>,
    err: Option<GqlError>,
    peeked: Option<(Token, Option<GqlError>)>,
    prev: Token,
    comment: Comments,
    consuming: bool,
    depth: usize,
}

#[derive(Default)]
struct Description {
    text: String,
    comment: Comments,
    present: bool,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Parser<'a> {
        Parser {
            lexer: Lexer::new(input),
            err: None,
            peeked: None,
            prev: Token {
                kind: Tk::Eof,
                value: String::new(),
                line: 1,
                col: 1,
            },
            comment: None,
            consuming: false,
            depth: 0,
        }
    }

    fn read_lexer(&mut self) -> (Token, Option<GqlError>) {
        match self.lexer.read() {
            Ok(t) => (t, None),
            Err((t, e)) => (t, Some(e)),
        }
    }

    fn peek(&mut self) -> Token {
        if self.err.is_some() {
            return self.prev.clone();
        }
        if self.peeked.is_none() {
            let (t, e) = self.read_lexer();
            let is_comment = t.kind == Tk::Comment;
            self.peeked = Some((t, e));
            if is_comment {
                self.consume_comment_group();
            }
        }
        match &self.peeked {
            Some((t, _)) => t.clone(),
            None => self.prev.clone(),
        }
    }

    fn consume_comment_group(&mut self) {
        if self.err.is_some() || self.consuming {
            return;
        }
        self.consuming = true;
        let mut list = Vec::new();
        loop {
            if self.err.is_some() {
                break;
            }
            let t = self.peek();
            if t.kind != Tk::Comment {
                break;
            }
            self.next();
            list.push(t.value);
        }
        self.comment = Some(list);
        self.consuming = false;
    }

    fn next(&mut self) -> Token {
        if self.err.is_some() {
            return self.prev.clone();
        }
        if let Some((t, e)) = self.peeked.take() {
            self.comment = None;
            self.prev = t;
            self.err = e;
        } else {
            let (t, e) = self.read_lexer();
            let is_comment = t.kind == Tk::Comment;
            self.prev = t;
            self.err = e;
            if is_comment {
                self.consume_comment_group();
            }
        }
        self.prev.clone()
    }

    fn error(&mut self, tok: &Token, msg: String) {
        if self.err.is_none() {
            self.err = Some(GqlError::at(tok.loc(), msg));
        }
    }

    fn peek_loc(&mut self) -> Loc {
        if self.err.is_some() {
            return None;
        }
        self.peek().loc()
    }

    fn expect_keyword(&mut self, word: &str) -> (Token, Comments) {
        let tok = self.peek();
        let comment = self.comment.clone();
        if tok.kind == Tk::Name && tok.value == word {
            return (self.next(), comment);
        }
        self.error(
            &tok,
            format!("Expected {}, found {}", go_quote(word), tok.describe()),
        );
        (tok, comment)
    }

    fn expect(&mut self, kind: Tk) -> (Token, Comments) {
        let tok = self.peek();
        let comment = self.comment.clone();
        if tok.kind == kind {
            return (self.next(), comment);
        }
        self.error(
            &tok,
            format!("Expected {}, found {}", kind.text(), tok.kind.text()),
        );
        (tok, comment)
    }

    fn skip(&mut self, kind: Tk) -> bool {
        if self.err.is_some() {
            return false;
        }
        if self.peek().kind != kind {
            return false;
        }
        self.next();
        true
    }

    fn unexpected(&mut self) {
        let t = self.peek();
        self.unexpected_token(&t);
    }

    fn unexpected_token(&mut self, tok: &Token) {
        self.error(tok, format!("Unexpected {}", tok.describe()));
    }

    fn many(&mut self, start: Tk, end: Tk, mut f: impl FnMut(&mut Self)) {
        if !self.skip(start) {
            return;
        }
        while self.peek().kind != end && self.err.is_none() {
            f(self);
        }
        self.next();
    }

    fn some(&mut self, start: Tk, end: Tk, mut f: impl FnMut(&mut Self)) -> Comments {
        if !self.skip(start) {
            return None;
        }
        let mut called = false;
        while self.peek().kind != end && self.err.is_none() {
            called = true;
            f(self);
        }
        if !called {
            let t = self.peek();
            self.error(
                &t,
                format!("expected at least one definition, found {}", t.kind.text()),
            );
            return None;
        }
        let comment = self.comment.clone();
        self.next();
        comment
    }

    fn enter(&mut self) -> bool {
        if self.depth >= MAX_NESTING {
            let t = self.peek();
            self.error(
                &t,
                format!("exceeded maximum nesting depth of {MAX_NESTING}"),
            );
            return false;
        }
        self.depth += 1;
        true
    }

    fn name(&mut self) -> String {
        self.expect(Tk::Name).0.value
    }

    fn description(&mut self) -> Description {
        let t = self.peek();
        if t.kind != Tk::BlockStr && t.kind != Tk::Str {
            return Description::default();
        }
        let comment = self.comment.clone();
        let text = self.next().value;
        Description {
            text,
            comment,
            present: true,
        }
    }

    // Queries

    fn query_document(&mut self) -> QueryDoc {
        let mut doc = QueryDoc::default();
        while self.peek().kind != Tk::Eof {
            if self.err.is_some() {
                return doc;
            }
            let desc = self.description();
            let t = self.peek();
            match t.kind {
                Tk::Name => match t.value.as_str() {
                    "query" | "mutation" | "subscription" => {
                        let op = self.operation_definition(desc);
                        doc.operations.push(op);
                    }
                    "fragment" => {
                        let f = self.fragment_definition(desc);
                        doc.fragments.push(f);
                    }
                    _ => self.unexpected(),
                },
                Tk::BraceL => {
                    let op = self.operation_definition(desc);
                    doc.operations.push(op);
                }
                _ => self.unexpected(),
            }
        }
        doc
    }

    fn operation_definition(&mut self, desc: Description) -> Operation {
        if self.peek().kind == Tk::BraceL {
            if desc.present {
                let prev = self.prev.clone();
                self.unexpected_token(&prev);
            }
            let loc = self.peek_loc();
            let sel = self.required_selection_set();
            // Go reads `p.comment` only after parsing the selection set, when it is empty again.
            let comment = self.comment.clone();
            return Operation {
                operation: "query".into(),
                sel,
                loc,
                comment,
                ..Operation::default()
            };
        }
        let mut op = Operation {
            description: desc.text,
            ..Operation::default()
        };
        op.loc = self.peek_loc();
        op.comment = join_comments(desc.comment, self.comment.clone());
        op.operation = self.operation_type();
        if self.peek().kind == Tk::Name {
            op.name = self.next().value;
        }
        op.var_defs = self.variable_definitions();
        op.directives = self.directives(false);
        op.sel = self.required_selection_set();
        op
    }

    fn operation_type(&mut self) -> String {
        let t = self.next();
        match t.value.as_str() {
            "query" | "mutation" | "subscription" => t.value,
            _ => {
                self.unexpected_token(&t);
                String::new()
            }
        }
    }

    fn variable_definitions(&mut self) -> Vec<VarDef> {
        let mut defs = Vec::new();
        self.some(Tk::ParenL, Tk::ParenR, |p| {
            let d = p.variable_definition();
            defs.push(d);
        });
        defs
    }

    fn variable_definition(&mut self) -> VarDef {
        let desc = self.description();
        let mut d = VarDef {
            description: desc.text,
            ..VarDef::default()
        };
        d.loc = self.peek_loc();
        d.comment = join_comments(desc.comment, self.comment.clone());
        d.variable = self.variable();
        self.expect(Tk::Colon);
        d.ty = self.type_reference();
        if self.skip(Tk::Equals) {
            d.default = self.value_literal(true);
        }
        d.directives = self.directives(false);
        d
    }

    fn variable(&mut self) -> String {
        self.expect(Tk::Dollar);
        self.name()
    }

    fn optional_selection_set(&mut self) -> Vec<Sel> {
        if !self.enter() {
            return Vec::new();
        }
        let mut sels = Vec::new();
        self.some(Tk::BraceL, Tk::BraceR, |p| {
            let s = p.selection();
            sels.push(s);
        });
        self.depth -= 1;
        sels
    }

    fn required_selection_set(&mut self) -> Vec<Sel> {
        let t = self.peek();
        if t.kind != Tk::BraceL {
            self.error(
                &t,
                format!("Expected {}, found {}", Tk::BraceL.text(), t.kind.text()),
            );
            return Vec::new();
        }
        self.optional_selection_set()
    }

    fn selection(&mut self) -> Sel {
        if self.peek().kind == Tk::Spread {
            return self.fragment();
        }
        Sel::Field(self.field())
    }

    fn field(&mut self) -> Field {
        let mut f = Field {
            loc: self.peek_loc(),
            comment: self.comment.clone(),
            ..Field::default()
        };
        f.alias = self.name();
        f.name = if self.skip(Tk::Colon) {
            self.name()
        } else {
            f.alias.clone()
        };
        f.args = self.arguments(false);
        f.directives = self.directives(false);
        if self.peek().kind == Tk::BraceL {
            f.sel = self.optional_selection_set();
        }
        f
    }

    fn arguments(&mut self, is_const: bool) -> Vec<Argument> {
        let mut args = Vec::new();
        self.some(Tk::ParenL, Tk::ParenR, |p| {
            let a = p.argument(is_const);
            args.push(a);
        });
        args
    }

    fn argument(&mut self, is_const: bool) -> Argument {
        let mut a = Argument {
            loc: self.peek_loc(),
            comment: self.comment.clone(),
            ..Argument::default()
        };
        a.name = self.name();
        self.expect(Tk::Colon);
        a.value = self.value_literal(is_const);
        a
    }

    fn fragment(&mut self) -> Sel {
        let (_, comment) = self.expect(Tk::Spread);
        let t = self.peek();
        if t.kind == Tk::Name && t.value != "on" {
            let loc = self.peek_loc();
            let name = self.fragment_name();
            let directives = self.directives(false);
            return Sel::Spread(Spread {
                name,
                directives,
                loc,
                comment,
            });
        }
        let mut f = Inline {
            loc: self.peek_loc(),
            comment,
            ..Inline::default()
        };
        if self.peek().value == "on" {
            self.next();
            f.type_cond = self.name();
        }
        f.directives = self.directives(false);
        f.sel = self.required_selection_set();
        Sel::Inline(f)
    }

    fn fragment_definition(&mut self, desc: Description) -> Fragment {
        let mut f = Fragment {
            description: desc.text,
            ..Fragment::default()
        };
        f.loc = self.peek_loc();
        f.comment = join_comments(desc.comment, self.comment.clone());
        self.expect_keyword("fragment");
        f.name = self.fragment_name();
        f.var_defs = self.variable_definitions();
        self.expect_keyword("on");
        f.type_cond = self.name();
        f.directives = self.directives(false);
        f.sel = self.required_selection_set();
        f
    }

    fn fragment_name(&mut self) -> String {
        if self.peek().value == "on" {
            self.unexpected();
            return String::new();
        }
        self.name()
    }

    fn value_literal(&mut self, is_const: bool) -> Option<Val> {
        let t = self.peek();
        let kind = match t.kind {
            Tk::BracketL => return self.list(is_const),
            Tk::BraceL => return self.object(is_const),
            Tk::Dollar => {
                if is_const {
                    self.unexpected();
                    return None;
                }
                let raw = self.variable();
                return Some(Val {
                    raw,
                    kind: K_VARIABLE,
                    loc: t.loc(),
                    comment: self.comment.clone(),
                    ..Val::default()
                });
            }
            Tk::Int => K_INT,
            Tk::Float => K_FLOAT,
            Tk::Str => K_STRING,
            Tk::BlockStr => K_BLOCK,
            Tk::Name => match t.value.as_str() {
                "true" | "false" => K_BOOLEAN,
                "null" => K_NULL,
                _ => K_ENUM,
            },
            _ => {
                self.unexpected();
                return None;
            }
        };
        self.next();
        Some(Val {
            raw: t.value.clone(),
            kind,
            loc: t.loc(),
            comment: self.comment.clone(),
            ..Val::default()
        })
    }

    fn list(&mut self, is_const: bool) -> Option<Val> {
        if !self.enter() {
            return None;
        }
        let loc = self.peek_loc();
        let comment = self.comment.clone();
        let mut children = Vec::new();
        self.many(Tk::BracketL, Tk::BracketR, |p| {
            let v = p.value_literal(is_const);
            children.push(ChildVal {
                value: v,
                ..ChildVal::default()
            });
        });
        self.depth -= 1;
        Some(Val {
            children,
            kind: K_LIST,
            loc,
            comment,
            ..Val::default()
        })
    }

    fn object(&mut self, is_const: bool) -> Option<Val> {
        if !self.enter() {
            return None;
        }
        let loc = self.peek_loc();
        let comment = self.comment.clone();
        let mut children = Vec::new();
        self.many(Tk::BraceL, Tk::BraceR, |p| {
            let mut c = ChildVal {
                loc: p.peek_loc(),
                comment: p.comment.clone(),
                ..ChildVal::default()
            };
            c.name = p.name();
            p.expect(Tk::Colon);
            c.value = p.value_literal(is_const);
            children.push(c);
        });
        self.depth -= 1;
        Some(Val {
            children,
            kind: K_OBJECT,
            loc,
            comment,
            ..Val::default()
        })
    }

    fn directives(&mut self, is_const: bool) -> Vec<Directive> {
        let mut out = Vec::new();
        while self.peek().kind == Tk::At {
            if self.err.is_some() {
                break;
            }
            self.expect(Tk::At);
            let loc = self.peek_loc();
            let name = self.name();
            let args = self.arguments(is_const);
            out.push(Directive { name, args, loc });
        }
        out
    }

    fn type_reference(&mut self) -> Ty {
        let mut t = Ty::default();
        if self.skip(Tk::BracketL) {
            if !self.enter() {
                return t;
            }
            t.loc = self.peek_loc();
            t.elem = Some(Box::new(self.type_reference()));
            self.expect(Tk::BracketR);
            self.depth -= 1;
        } else {
            t.loc = self.peek_loc();
            t.named = self.name();
        }
        if self.skip(Tk::Bang) {
            t.non_null = true;
        }
        t
    }

    // Schemas

    fn schema_document(&mut self) -> SchemaDoc {
        let mut doc = SchemaDoc::default();
        while self.peek().kind != Tk::Eof {
            if self.err.is_some() {
                return doc;
            }
            let mut desc = Description::default();
            if matches!(self.peek().kind, Tk::BlockStr | Tk::Str) {
                desc = self.description();
            }
            let t = self.peek();
            if t.kind != Tk::Name {
                self.unexpected();
                break;
            }
            match t.value.as_str() {
                "scalar" | "type" | "interface" | "union" | "enum" | "input" => {
                    let d = self.type_system_definition(desc);
                    doc.defs.push(d);
                }
                "schema" => {
                    let d = self.schema_definition(desc);
                    doc.schema.push(d);
                }
                "directive" => {
                    let d = self.directive_definition(desc);
                    doc.directives.push(d);
                }
                "extend" => {
                    if !desc.text.is_empty() {
                        let prev = self.prev.clone();
                        self.unexpected_token(&prev);
                    }
                    self.type_system_extension(&mut doc);
                }
                _ => {
                    self.unexpected();
                    return doc;
                }
            }
        }
        doc.comment = self.comment.clone();
        doc
    }

    fn type_system_definition(&mut self, desc: Description) -> Def {
        let t = self.peek();
        let kind = match t.value.as_str() {
            "scalar" => "SCALAR",
            "type" => "OBJECT",
            "interface" => "INTERFACE",
            "union" => "UNION",
            "enum" => "ENUM",
            _ => "INPUT_OBJECT",
        };
        let (_, comment) = self.expect_keyword(&t.value);
        let mut d = Def {
            kind: kind.into(),
            loc: self.peek_loc(),
            ..Def::default()
        };
        d.before = desc.comment;
        d.description = desc.text;
        d.after = comment;
        d.name = self.name();
        match kind {
            "SCALAR" => d.directives = self.directives(true),
            "OBJECT" | "INTERFACE" => {
                d.interfaces = self.implements();
                d.directives = self.directives(true);
                let (f, e) = self.fields_definition();
                d.fields = f;
                d.end = e;
            }
            "UNION" => {
                d.directives = self.directives(true);
                let (types, locs) = self.union_members();
                d.types = types;
                d.type_locs = locs;
            }
            "ENUM" => {
                d.directives = self.directives(true);
                let (v, e) = self.enum_values();
                d.enum_values = v;
                d.end = e;
            }
            _ => {
                d.directives = self.directives(true);
                let (f, e) = self.input_fields();
                d.fields = f;
                d.end = e;
            }
        }
        d
    }

    fn schema_definition(&mut self, desc: Description) -> SchemaDef {
        let (_, comment) = self.expect_keyword("schema");
        let mut d = SchemaDef {
            loc: self.peek_loc(),
            ..SchemaDef::default()
        };
        d.before = desc.comment;
        d.description = desc.text;
        d.after = comment;
        d.directives = self.directives(true);
        let mut ops = Vec::new();
        d.end = self.some(Tk::BraceL, Tk::BraceR, |p| {
            let o = p.operation_type_definition();
            ops.push(o);
        });
        d.op_types = ops;
        d
    }

    fn operation_type_definition(&mut self) -> OpType {
        let mut o = OpType {
            loc: self.peek_loc(),
            comment: self.comment.clone(),
            ..OpType::default()
        };
        o.operation = self.operation_type();
        self.expect(Tk::Colon);
        o.ty = self.name();
        o
    }

    fn implements(&mut self) -> Vec<String> {
        let mut types = Vec::new();
        if self.peek().value == "implements" {
            self.next();
            self.skip(Tk::Amp);
            types.push(self.name());
            while self.skip(Tk::Amp) && self.err.is_none() {
                types.push(self.name());
            }
        }
        types
    }

    fn fields_definition(&mut self) -> (Vec<FieldDef>, Comments) {
        let mut defs = Vec::new();
        let c = self.some(Tk::BraceL, Tk::BraceR, |p| {
            let f = p.field_definition(true);
            defs.push(f);
        });
        (defs, c)
    }

    fn input_fields(&mut self) -> (Vec<FieldDef>, Comments) {
        let mut defs = Vec::new();
        let c = self.some(Tk::BraceL, Tk::BraceR, |p| {
            let f = p.field_definition(false);
            defs.push(f);
        });
        (defs, c)
    }

    /// An object field (`with_args`) or an input field (`= default` instead).
    fn field_definition(&mut self, with_args: bool) -> FieldDef {
        let mut d = FieldDef::default();
        let desc = self.description();
        if !desc.text.is_empty() {
            d.before = desc.comment;
            d.description = desc.text;
        }
        self.peek();
        d.after = self.comment.clone();
        d.loc = self.peek_loc();
        d.name = self.name();
        if with_args {
            d.args = self.argument_defs();
        }
        self.expect(Tk::Colon);
        d.ty = self.type_reference();
        if !with_args && self.skip(Tk::Equals) {
            d.default = self.value_literal(true);
        }
        d.directives = self.directives(true);
        d
    }

    fn argument_defs(&mut self) -> Vec<ArgDef> {
        let mut args = Vec::new();
        self.some(Tk::ParenL, Tk::ParenR, |p| {
            let mut d = ArgDef::default();
            let desc = p.description();
            if !desc.text.is_empty() {
                d.before = desc.comment;
                d.description = desc.text;
            }
            p.peek();
            d.after = p.comment.clone();
            d.loc = p.peek_loc();
            d.name = p.name();
            p.expect(Tk::Colon);
            d.ty = p.type_reference();
            if p.skip(Tk::Equals) {
                d.default = p.value_literal(true);
            }
            d.directives = p.directives(true);
            args.push(d);
        });
        args
    }

    fn union_members(&mut self) -> (Vec<String>, Vec<Loc>) {
        let mut types = Vec::new();
        let mut locs = Vec::new();
        if self.skip(Tk::Equals) {
            self.skip(Tk::Pipe);
            locs.push(self.peek_loc());
            types.push(self.name());
            while self.skip(Tk::Pipe) && self.err.is_none() {
                locs.push(self.peek_loc());
                types.push(self.name());
            }
        }
        (types, locs)
    }

    fn enum_values(&mut self) -> (Vec<EnumVal>, Comments) {
        let mut values = Vec::new();
        let c = self.some(Tk::BraceL, Tk::BraceR, |p| {
            let mut d = EnumVal::default();
            let desc = p.description();
            if !desc.text.is_empty() {
                d.before = desc.comment;
                d.description = desc.text;
            }
            p.peek();
            d.after = p.comment.clone();
            d.loc = p.peek_loc();
            d.name = p.name();
            d.directives = p.directives(true);
            values.push(d);
        });
        (values, c)
    }

    fn type_system_extension(&mut self, doc: &mut SchemaDoc) {
        let (_, comment) = self.expect_keyword("extend");
        let word = self.peek().value;
        match word.as_str() {
            "schema" => {
                self.expect_keyword("schema");
                let mut d = SchemaDef {
                    loc: self.peek_loc(),
                    after: comment,
                    ..SchemaDef::default()
                };
                d.directives = self.directives(true);
                let mut ops = Vec::new();
                d.end = self.some(Tk::BraceL, Tk::BraceR, |p| {
                    let o = p.operation_type_definition();
                    ops.push(o);
                });
                d.op_types = ops;
                if d.directives.is_empty() && d.op_types.is_empty() {
                    self.unexpected();
                }
                doc.schema_ext.push(d);
            }
            "scalar" | "type" | "interface" | "union" | "enum" | "input" => {
                self.expect_keyword(&word);
                let kind = match word.as_str() {
                    "scalar" => "SCALAR",
                    "type" => "OBJECT",
                    "interface" => "INTERFACE",
                    "union" => "UNION",
                    "enum" => "ENUM",
                    _ => "INPUT_OBJECT",
                };
                let mut d = Def {
                    kind: kind.into(),
                    loc: self.peek_loc(),
                    after: comment,
                    ..Def::default()
                };
                d.name = self.name();
                let empty = match kind {
                    "SCALAR" => {
                        d.directives = self.directives(true);
                        d.directives.is_empty()
                    }
                    "OBJECT" | "INTERFACE" => {
                        d.interfaces = self.implements();
                        d.directives = self.directives(true);
                        let (f, e) = self.fields_definition();
                        d.fields = f;
                        d.end = e;
                        d.interfaces.is_empty() && d.directives.is_empty() && d.fields.is_empty()
                    }
                    "UNION" => {
                        d.directives = self.directives(true);
                        let (types, locs) = self.union_members();
                        d.types = types;
                        d.type_locs = locs;
                        d.directives.is_empty() && d.types.is_empty()
                    }
                    "ENUM" => {
                        d.directives = self.directives(true);
                        let (v, e) = self.enum_values();
                        d.enum_values = v;
                        d.end = e;
                        d.directives.is_empty() && d.enum_values.is_empty()
                    }
                    _ => {
                        d.directives = self.directives(false);
                        let (f, e) = self.input_fields();
                        d.fields = f;
                        d.end = e;
                        d.directives.is_empty() && d.fields.is_empty()
                    }
                };
                if empty {
                    self.unexpected();
                }
                doc.exts.push(d);
            }
            "directive" => {
                self.expect_keyword("directive");
                self.expect(Tk::At);
                let mut d = DirDef {
                    loc: self.peek_loc(),
                    after: comment,
                    ..DirDef::default()
                };
                d.name = self.name();
                d.directives = self.directives(true);
                if d.directives.is_empty() {
                    self.unexpected();
                }
                doc.directive_exts.push(d);
            }
            _ => self.unexpected(),
        }
    }

    fn directive_definition(&mut self, desc: Description) -> DirDef {
        let (_, comment) = self.expect_keyword("directive");
        self.expect(Tk::At);
        let mut d = DirDef {
            loc: self.peek_loc(),
            ..DirDef::default()
        };
        d.before = desc.comment;
        d.description = desc.text;
        d.after = comment;
        d.name = self.name();
        d.args = self.argument_defs();
        d.directives = self.directives(true);
        let t = self.peek();
        if t.kind == Tk::Name && t.value == "repeatable" {
            d.repeatable = true;
            self.skip(Tk::Name);
        }
        self.expect_keyword("on");
        self.skip(Tk::Pipe);
        d.locations.push(self.directive_location());
        while self.skip(Tk::Pipe) && self.err.is_none() {
            d.locations.push(self.directive_location());
        }
        d
    }

    fn directive_location(&mut self) -> String {
        let (t, _) = self.expect(Tk::Name);
        if DIRECTIVE_LOCATIONS.contains(&t.value.as_str()) {
            return t.value;
        }
        self.unexpected_token(&t);
        String::new()
    }
}

const DIRECTIVE_LOCATIONS: [&str; 20] = [
    "QUERY",
    "MUTATION",
    "SUBSCRIPTION",
    "FIELD",
    "FRAGMENT_DEFINITION",
    "FRAGMENT_SPREAD",
    "INLINE_FRAGMENT",
    "VARIABLE_DEFINITION",
    "SCHEMA",
    "SCALAR",
    "OBJECT",
    "FIELD_DEFINITION",
    "ARGUMENT_DEFINITION",
    "INTERFACE",
    "UNION",
    "ENUM",
    "ENUM_VALUE",
    "INPUT_OBJECT",
    "INPUT_FIELD_DEFINITION",
    "DIRECTIVE_DEFINITION",
];

fn join_comments(before: Comments, after: Comments) -> Comments {
    match (before, after) {
        (None, a) => a,
        (b, None) => b,
        (Some(mut b), Some(a)) => {
            b.extend(a);
            Some(b)
        }
    }
}

fn parse_query_text(text: &str) -> Result<QueryDoc, GqlError> {
    let mut p = Parser::new(text);
    let doc = p.query_document();
    match p.err {
        Some(e) => Err(e),
        None => Ok(doc),
    }
}

fn parse_schema_text(text: &str, builtin: bool) -> Result<SchemaDoc, GqlError> {
    let mut p = Parser::new(text);
    let mut doc = p.schema_document();
    if let Some(e) = p.err {
        return Err(e);
    }
    for d in doc.defs.iter_mut().chain(doc.exts.iter_mut()) {
        d.builtin = builtin;
    }
    Ok(doc)
}

// ---------------------------------------------------------------------------------------------
// Schema validation (gqlparser's `ValidateSchemaDocument`, with its prelude merged in first)

/// The types and directives every schema has implicitly, as in the GraphQL specification.
const PRELUDE: &str = r#"
scalar Int
scalar Float
scalar String
scalar Boolean
scalar ID
directive @defer(if: Boolean = true, label: String) on FRAGMENT_SPREAD | INLINE_FRAGMENT
directive @include(if: Boolean!) on FIELD | FRAGMENT_SPREAD | INLINE_FRAGMENT
directive @skip(if: Boolean!) on FIELD | FRAGMENT_SPREAD | INLINE_FRAGMENT
directive @deprecated(reason: String = "No longer supported") on FIELD_DEFINITION | ARGUMENT_DEFINITION | INPUT_FIELD_DEFINITION | ENUM_VALUE | DIRECTIVE_DEFINITION
directive @specifiedBy(url: String!) on SCALAR
directive @oneOf on INPUT_OBJECT
type __Schema {
  description: String
  types: [__Type!]!
  queryType: __Type!
  mutationType: __Type
  subscriptionType: __Type
  directives: [__Directive!]!
}
type __Type {
  kind: __TypeKind!
  name: String
  description: String
  specifiedByURL: String
  fields(includeDeprecated: Boolean = false): [__Field!]
  interfaces: [__Type!]
  possibleTypes: [__Type!]
  enumValues(includeDeprecated: Boolean = false): [__EnumValue!]
  inputFields(includeDeprecated: Boolean = false): [__InputValue!]
  ofType: __Type
  isOneOf: Boolean
}
enum __TypeKind { SCALAR OBJECT INTERFACE UNION ENUM INPUT_OBJECT LIST NON_NULL }
type __Field {
  name: String!
  description: String
  args(includeDeprecated: Boolean = false): [__InputValue!]!
  type: __Type!
  isDeprecated: Boolean!
  deprecationReason: String
}
type __InputValue {
  name: String!
  description: String
  type: __Type!
  defaultValue: String
  isDeprecated: Boolean!
  deprecationReason: String
}
type __EnumValue {
  name: String!
  description: String
  isDeprecated: Boolean!
  deprecationReason: String
}
type __Directive {
  name: String!
  description: String
  isRepeatable: Boolean!
  locations: [__DirectiveLocation!]!
  args(includeDeprecated: Boolean = false): [__InputValue!]!
}
enum __DirectiveLocation {
  QUERY MUTATION SUBSCRIPTION FIELD FRAGMENT_DEFINITION FRAGMENT_SPREAD INLINE_FRAGMENT
  VARIABLE_DEFINITION SCHEMA SCALAR OBJECT FIELD_DEFINITION ARGUMENT_DEFINITION INTERFACE
  UNION ENUM ENUM_VALUE INPUT_OBJECT INPUT_FIELD_DEFINITION DIRECTIVE_DEFINITION
}
"#;

#[derive(Debug, Default)]
struct Schema {
    types: BTreeMap<String, Def>,
    directives: BTreeMap<String, DirDef>,
    query: Option<String>,
    mutation: Option<String>,
    subscription: Option<String>,
    possible: BTreeMap<String, Vec<String>>,
}

impl Schema {
    fn root(&self, op: &str) -> Option<&Def> {
        let name = match op {
            "mutation" => self.mutation.as_ref(),
            "subscription" => self.subscription.as_ref(),
            _ => self.query.as_ref(),
        }?;
        self.types.get(name)
    }

    fn possible_types(&self, name: &str) -> Vec<&Def> {
        self.possible
            .get(name)
            .map(|names| names.iter().filter_map(|n| self.types.get(n)).collect())
            .unwrap_or_default()
    }
}

fn kind_list(kinds: &[&str]) -> String {
    kinds.join(", ")
}

fn build_schema(user: &SchemaDoc) -> Result<Schema, GqlError> {
    let prelude = parse_schema_text(PRELUDE, true)?;
    let mut sd = prelude;
    sd.schema.extend(user.schema.iter().cloned());
    sd.schema_ext.extend(user.schema_ext.iter().cloned());
    sd.directives.extend(user.directives.iter().cloned());
    sd.directive_exts
        .extend(user.directive_exts.iter().cloned());
    sd.defs.extend(user.defs.iter().cloned());
    sd.exts.extend(user.exts.iter().cloned());

    let mut schema = Schema::default();
    let mut order: Vec<String> = Vec::new();
    for def in &sd.defs {
        if schema.types.contains_key(&def.name) {
            return Err(GqlError::at(
                def.loc,
                format!("Cannot redeclare type {}.", def.name),
            ));
        }
        schema.types.insert(def.name.clone(), def.clone());
        order.push(def.name.clone());
    }
    for ext in &sd.exts {
        if !schema.types.contains_key(&ext.name) {
            let base = Def {
                kind: ext.kind.clone(),
                name: ext.name.clone(),
                loc: ext.loc,
                ..Def::default()
            };
            schema.types.insert(ext.name.clone(), base);
            order.push(ext.name.clone());
        }
        let Some(def) = schema.types.get_mut(&ext.name) else {
            continue;
        };
        if def.kind != ext.kind {
            return Err(GqlError::at(
                ext.loc,
                format!(
                    "Cannot extend type {} because the base type is a {}, not {}.",
                    ext.name, def.kind, ext.kind
                ),
            ));
        }
        def.directives.extend(ext.directives.iter().cloned());
        def.interfaces.extend(ext.interfaces.iter().cloned());
        def.fields.extend(ext.fields.iter().cloned());
        def.types.extend(ext.types.iter().cloned());
        def.type_locs.extend(ext.type_locs.iter().copied());
        def.enum_values.extend(ext.enum_values.iter().cloned());
    }
    for name in &order {
        let Some(def) = schema.types.get(name) else {
            continue;
        };
        let (kind, interfaces, members) =
            (def.kind.clone(), def.interfaces.clone(), def.types.clone());
        match kind.as_str() {
            "UNION" => {
                for t in members {
                    if schema.types.contains_key(&t) {
                        schema.possible.entry(name.clone()).or_default().push(t);
                    }
                }
            }
            "INPUT_OBJECT" | "OBJECT" => {
                for i in interfaces {
                    schema.possible.entry(i).or_default().push(name.clone());
                }
                schema
                    .possible
                    .entry(name.clone())
                    .or_default()
                    .push(name.clone());
            }
            "INTERFACE" => {
                for i in interfaces {
                    schema.possible.entry(i).or_default().push(name.clone());
                }
            }
            _ => {}
        }
    }
    for dir in &sd.directives {
        if schema.directives.contains_key(&dir.name)
            && !matches!(
                dir.name.as_str(),
                "defer" | "deprecated" | "include" | "oneOf" | "skip" | "specifiedBy"
            )
        {
            return Err(GqlError::at(
                dir.loc,
                format!("Cannot redeclare directive {}.", dir.name),
            ));
        }
        schema.directives.insert(dir.name.clone(), dir.clone());
    }
    for ext in &sd.directive_exts {
        let Some(def) = schema.directives.get_mut(&ext.name) else {
            return Err(GqlError::at(
                ext.loc,
                format!(
                    "Cannot extend directive @{} because it is not defined.",
                    ext.name
                ),
            ));
        };
        def.directives.extend(ext.directives.iter().cloned());
    }
    if let Some(second) = sd.schema.get(1) {
        return Err(GqlError::at(
            second.loc,
            "Cannot have multiple schema entry points, consider schema extensions instead.",
        ));
    }
    let mut root_locs: BTreeMap<String, Loc> = BTreeMap::new();
    for def in sd.schema.iter().chain(sd.schema_ext.iter()) {
        for ep in &def.op_types {
            if root_locs.contains_key(&ep.operation) {
                return Err(GqlError::at(
                    ep.loc,
                    format!("There can be only one {} type in schema.", ep.operation),
                ));
            }
            root_locs.insert(ep.operation.clone(), ep.loc);
            if !schema.types.contains_key(&ep.ty) {
                return Err(GqlError::at(
                    ep.loc,
                    format!(
                        "Schema root {} refers to a type {} that does not exist.",
                        ep.operation, ep.ty
                    ),
                ));
            }
            let slot = match ep.operation.as_str() {
                "query" => &mut schema.query,
                "mutation" => &mut schema.mutation,
                _ => &mut schema.subscription,
            };
            *slot = Some(ep.ty.clone());
        }
        check_directives(&schema, &def.directives, "SCHEMA", None, true)?;
    }
    let names: Vec<String> = schema.types.keys().cloned().collect();
    for name in &names {
        if let Some(def) = schema.types.get(name) {
            check_definition(&schema, def)?;
        }
    }
    check_input_cycles(&schema)?;
    for def in schema.directives.values() {
        check_directive_definition(&schema, def)?;
    }
    if sd.schema.is_empty() {
        for (slot, name) in [
            (&mut schema.query, "Query"),
            (&mut schema.mutation, "Mutation"),
            (&mut schema.subscription, "Subscription"),
        ] {
            if slot.is_none() && schema.types.contains_key(name) {
                *slot = Some(name.to_owned());
            }
        }
    }
    for (op, slot, message) in [
        (
            "query",
            &schema.query,
            "Query root type must be Object type, it cannot be",
        ),
        (
            "mutation",
            &schema.mutation,
            "Mutation root type must be Object type if provided, it cannot be",
        ),
        (
            "subscription",
            &schema.subscription,
            "Subscription root type must be Object type if provided, it cannot be",
        ),
    ] {
        let Some(def) = slot.as_ref().and_then(|n| schema.types.get(n)) else {
            continue;
        };
        if def.kind != "OBJECT" {
            let loc = root_locs.get(op).copied().unwrap_or(def.loc);
            return Err(GqlError::at(loc, format!("{message} {}.", def.name)));
        }
    }
    if let Some(q) = schema.query.clone() {
        if let Some(def) = schema.types.get_mut(&q) {
            let named = |n: &str, nn: bool| Ty {
                named: n.into(),
                non_null: nn,
                ..Ty::default()
            };
            def.fields.push(FieldDef {
                name: "__schema".into(),
                ty: named("__Schema", true),
                ..FieldDef::default()
            });
            def.fields.push(FieldDef {
                name: "__type".into(),
                ty: named("__Type", false),
                args: vec![ArgDef {
                    name: "name".into(),
                    ty: named("String", true),
                    ..ArgDef::default()
                }],
                ..FieldDef::default()
            });
        }
    }
    Ok(schema)
}

fn check_name(loc: Loc, name: &str) -> Result<(), GqlError> {
    if name.starts_with("__") {
        return Err(GqlError::at(
            loc,
            format!("Name \"{name}\" must not begin with \"__\", which is reserved by GraphQL introspection."),
        ));
    }
    Ok(())
}

fn duplicate_arg(args: &[ArgDef]) -> Option<&ArgDef> {
    args.iter()
        .enumerate()
        .find_map(|(i, a)| args.get(..i)?.iter().any(|b| b.name == a.name).then_some(a))
}

fn check_type_ref(schema: &Schema, t: &Ty) -> Result<(), GqlError> {
    if !schema.types.contains_key(t.name()) {
        return Err(GqlError::at(t.loc, format!("Undefined type {}.", t.name())));
    }
    Ok(())
}

fn check_input_field_names(v: &Option<Val>) -> Result<(), GqlError> {
    let Some(v) = v else { return Ok(()) };
    let mut seen = BTreeSet::new();
    for c in &v.children {
        if v.kind == K_OBJECT && v.children.len() > 1 && !seen.insert(c.name.clone()) {
            return Err(GqlError::at(
                c.loc,
                format!("There can be only one input field named \"{}\".", c.name),
            ));
        }
        check_input_field_names(&c.value)?;
    }
    Ok(())
}

fn check_args(schema: &Schema, args: &[ArgDef], current: Option<&str>) -> Result<(), GqlError> {
    for a in args {
        check_name(a.loc, &a.name)?;
        check_type_ref(schema, &a.ty)?;
        check_input_field_names(&a.default)?;
        if let Some(def) = schema.types.get(a.ty.name()) {
            if !def.is_input() {
                return Err(GqlError::at(
                    a.loc,
                    format!(
                        "cannot use {} as argument {} because {} is not a valid input type",
                        a.ty.text(),
                        a.name,
                        def.kind
                    ),
                ));
            }
        }
        check_directives(schema, &a.directives, "ARGUMENT_DEFINITION", current, true)?;
    }
    Ok(())
}

fn check_directives(
    schema: &Schema,
    dirs: &[Directive],
    location: &str,
    current: Option<&str>,
    single_location: bool,
) -> Result<(), GqlError> {
    let mut seen = BTreeSet::new();
    for d in dirs {
        check_name(d.loc, &d.name)?;
        if current == Some(d.name.as_str()) {
            return Err(GqlError::at(
                d.loc,
                format!("Directive {} cannot refer to itself.", d.name),
            ));
        }
        let Some(def) = schema.directives.get(&d.name) else {
            return Err(GqlError::at(
                d.loc,
                format!("Undefined directive {}.", d.name),
            ));
        };
        if single_location {
            if seen.contains(&d.name) && !def.repeatable {
                return Err(GqlError::at(
                    d.loc,
                    format!(
                        "The directive {} can only be used once at this location.",
                        d.name
                    ),
                ));
            }
            seen.insert(d.name.clone());
        }
        if !def.locations.iter().any(|l| l == location) {
            return Err(GqlError::at(
                d.loc,
                format!("Directive {} is not applicable on {location}.", d.name),
            ));
        }
        for (i, a) in d.args.iter().enumerate() {
            if !def.args.iter().any(|x| x.name == a.name) {
                return Err(GqlError::at(
                    a.loc,
                    format!("Undefined argument {} for directive {}.", a.name, d.name),
                ));
            }
            if d.args
                .get(..i)
                .is_some_and(|prev| prev.iter().any(|p| p.name == a.name))
            {
                return Err(GqlError::at(
                    a.loc,
                    format!("There can be only one argument named {}.", a.name),
                ));
            }
        }
        for sa in &def.args {
            if sa.ty.non_null && sa.default.is_none() {
                let given = d.args.iter().find(|a| a.name == sa.name);
                if given.is_none_or(|a| a.value.as_ref().is_some_and(|v| v.kind == K_NULL)) {
                    return Err(GqlError::at(
                        d.loc,
                        format!(
                            "Argument {} for directive {} cannot be null.",
                            sa.name, d.name
                        ),
                    ));
                }
            }
        }
        for a in &d.args {
            check_input_field_names(&a.value)?;
        }
    }
    Ok(())
}

fn check_directive_definition(schema: &Schema, def: &DirDef) -> Result<(), GqlError> {
    check_name(def.loc, &def.name)?;
    if let Some(dup) = duplicate_arg(&def.args) {
        return Err(GqlError::at(
            dup.loc,
            format!(
                "Argument @{}({}:) can only be defined once.",
                def.name, dup.name
            ),
        ));
    }
    check_directives(
        schema,
        &def.directives,
        "DIRECTIVE_DEFINITION",
        Some(&def.name),
        true,
    )?;
    check_args(schema, &def.args, Some(&def.name))
}

#[allow(clippy::too_many_lines)] // gqlparser's checks, one after another
fn check_definition(schema: &Schema, def: &Def) -> Result<(), GqlError> {
    for f in &def.fields {
        check_name(f.loc, &f.name)?;
        check_type_ref(schema, &f.ty)?;
        check_input_field_names(&f.default)?;
        if let Some(dup) = duplicate_arg(&f.args) {
            return Err(GqlError::at(
                dup.loc,
                format!(
                    "Argument {}.{}({}:) can only be defined once.",
                    def.name, f.name, dup.name
                ),
            ));
        }
        check_args(schema, &f.args, None)?;
        let loc = if def.kind == "INPUT_OBJECT" {
            "INPUT_FIELD_DEFINITION"
        } else {
            "FIELD_DEFINITION"
        };
        check_directives(schema, &f.directives, loc, None, true)?;
    }
    for t in &def.types {
        let Some(td) = schema.types.get(t) else {
            return Err(GqlError::at(
                def.loc,
                format!("Undefined type {}.", go_quote(t)),
            ));
        };
        if td.kind != "OBJECT" {
            return Err(GqlError::at(
                def.loc,
                format!(
                    "{} type {} must be {}.",
                    def.kind,
                    go_quote(t),
                    kind_list(&["OBJECT"])
                ),
            ));
        }
    }
    for (i, intf) in def.interfaces.iter().enumerate() {
        if def
            .interfaces
            .get(..i)
            .is_some_and(|prev| prev.contains(intf))
        {
            return Err(GqlError::at(
                def.loc,
                format!("Type {} can only implement {intf} once.", def.name),
            ));
        }
        check_implements(schema, def, intf)?;
    }
    let empty = |what: &str| {
        GqlError::at(
            def.loc,
            format!("{} {}: must define one or more {what}.", def.kind, def.name),
        )
    };
    match def.kind.as_str() {
        "OBJECT" | "INTERFACE" => {
            if def.fields.is_empty() {
                return Err(empty("fields"));
            }
            for f in &def.fields {
                if let Some(t) = schema.types.get(f.ty.name()) {
                    if t.kind == "INPUT_OBJECT" {
                        return Err(GqlError::at(
                            f.loc,
                            format!(
                                "{} {}: field must be one of {}.",
                                def.kind,
                                def.name,
                                kind_list(&["SCALAR", "OBJECT", "INTERFACE", "UNION", "ENUM"])
                            ),
                        ));
                    }
                }
            }
        }
        "ENUM" => {
            if def.enum_values.is_empty() {
                return Err(empty("unique enum values"));
            }
            for v in &def.enum_values {
                check_name(v.loc, &v.name)?;
                if matches!(v.name.as_str(), "true" | "false" | "null") {
                    return Err(GqlError::at(
                        v.loc,
                        format!("{} {}: non-enum value {}.", def.kind, def.name, v.name),
                    ));
                }
                check_directives(schema, &v.directives, "ENUM_VALUE", None, true)?;
            }
        }
        "INPUT_OBJECT" => {
            if def.fields.is_empty() {
                return Err(empty("input fields"));
            }
            for f in &def.fields {
                if let Some(t) = schema.types.get(f.ty.name()) {
                    if !matches!(t.kind.as_str(), "SCALAR" | "ENUM" | "INPUT_OBJECT") {
                        return Err(GqlError::at(
                            f.loc,
                            format!(
                                "{} {}: field must be one of {}.",
                                t.kind,
                                f.name,
                                kind_list(&["SCALAR", "ENUM", "INPUT_OBJECT"])
                            ),
                        ));
                    }
                }
            }
        }
        "UNION" if def.types.is_empty() => return Err(empty("member types")),
        _ => {}
    }
    for (i, f) in def.fields.iter().enumerate() {
        if def
            .fields
            .get(..i)
            .is_some_and(|prev| prev.iter().any(|p| p.name == f.name))
        {
            return Err(GqlError::at(
                f.loc,
                format!("Field {}.{} can only be defined once.", def.name, f.name),
            ));
        }
    }
    for (i, v) in def.enum_values.iter().enumerate() {
        if def
            .enum_values
            .get(..i)
            .is_some_and(|prev| prev.iter().any(|p| p.name == v.name))
        {
            return Err(GqlError::at(
                v.loc,
                format!(
                    "Enum value {}.{} can only be defined once.",
                    def.name, v.name
                ),
            ));
        }
    }
    let aligned = def.type_locs.len() == def.types.len();
    for (j, t) in def.types.iter().enumerate() {
        if def.types.get(..j).is_some_and(|prev| prev.contains(t)) {
            let loc = if aligned {
                def.type_locs.get(j).copied().flatten().or(def.loc)
            } else {
                def.loc
            };
            return Err(GqlError::at(
                loc,
                format!("Union type {} can only include type {t} once.", def.name),
            ));
        }
    }
    if !def.builtin {
        check_name(def.loc, &def.name)?;
    }
    check_directives(schema, &def.directives, &def.kind, None, false)
}

fn check_implements(schema: &Schema, def: &Def, intf_name: &str) -> Result<(), GqlError> {
    let Some(intf) = schema.types.get(intf_name) else {
        return Err(GqlError::at(
            def.loc,
            format!("Undefined type {}.", go_quote(intf_name)),
        ));
    };
    if intf.kind != "INTERFACE" {
        return Err(GqlError::at(
            def.loc,
            format!(
                "{} is a non interface type {}.",
                go_quote(intf_name),
                intf.kind
            ),
        ));
    }
    if intf.name == def.name {
        return Err(GqlError::at(
            def.loc,
            format!(
                "Type {} cannot implement itself because it would create a circular reference.",
                def.name
            ),
        ));
    }
    for req in &intf.fields {
        let Some(found) = def.field(&req.name) else {
            return Err(GqlError::at(
                def.loc,
                format!(
                    "For {} to implement {} it must have a field called {}.",
                    def.name, intf.name, req.name
                ),
            ));
        };
        if !is_covariant(schema, &req.ty, &found.ty) {
            return Err(GqlError::at(
                found.loc,
                format!(
                    "For {} to implement {} the field {} must have type {}.",
                    def.name,
                    intf.name,
                    req.name,
                    req.ty.text()
                ),
            ));
        }
        for ra in &req.args {
            let Some(fa) = found.args.iter().find(|a| a.name == ra.name) else {
                return Err(GqlError::at(
                    found.loc,
                    format!(
                        "For {} to implement {} the field {} must have the same arguments but it is missing {}.",
                        def.name, intf.name, req.name, ra.name
                    ),
                ));
            };
            if !ra.ty.is_compatible(&fa.ty) {
                return Err(GqlError::at(
                    fa.loc,
                    format!(
                        "For {} to implement {} the field {} must have the same arguments but {} has the wrong type.",
                        def.name, intf.name, req.name, ra.name
                    ),
                ));
            }
        }
        for fa in &found.args {
            if !req.args.iter().any(|a| a.name == fa.name) && fa.ty.non_null && fa.default.is_none()
            {
                return Err(GqlError::at(
                    fa.loc,
                    format!(
                        "For {} to implement {} any additional arguments on {} must be optional or have a default value but {} is required.",
                        def.name, intf.name, found.name, fa.name
                    ),
                ));
            }
        }
    }
    for transitive in &intf.interfaces {
        if !def.interfaces.contains(transitive) {
            if *transitive == def.name {
                return Err(GqlError::at(
                    def.loc,
                    format!(
                        "Type {} cannot implement {intf_name} because it would create a circular reference.",
                        def.name
                    ),
                ));
            }
            return Err(GqlError::at(
                def.loc,
                format!(
                    "Type {} must implement {transitive} because it is implemented by {intf_name}.",
                    def.name
                ),
            ));
        }
    }
    Ok(())
}

fn is_covariant(schema: &Schema, required: &Ty, actual: &Ty) -> bool {
    if required.non_null && !actual.non_null {
        return false;
    }
    if !required.named.is_empty() {
        if required.named == actual.named {
            return true;
        }
        return schema
            .possible_types(&required.named)
            .iter()
            .any(|p| p.name == actual.named);
    }
    match (&required.elem, &actual.elem) {
        (Some(r), Some(a)) => is_covariant(schema, r, a),
        _ => false,
    }
}

fn check_input_cycles(schema: &Schema) -> Result<(), GqlError> {
    fn detect<'a>(
        schema: &'a Schema,
        def: &'a Def,
        visited: &mut BTreeSet<&'a str>,
        path: &mut Vec<&'a FieldDef>,
        index: &mut BTreeMap<&'a str, usize>,
    ) -> Result<(), GqlError> {
        if !visited.insert(&def.name) {
            return Ok(());
        }
        index.insert(&def.name, path.len());
        for f in &def.fields {
            if !f.ty.non_null || f.ty.named.is_empty() {
                continue;
            }
            let Some(ft) = schema
                .types
                .get(&f.ty.named)
                .filter(|t| t.kind == "INPUT_OBJECT")
            else {
                continue;
            };
            path.push(f);
            if let Some(&start) = index.get(ft.name.as_str()) {
                let cycle = path.get(start..).unwrap_or_default();
                let names: Vec<&str> = cycle.iter().map(|f| f.name.as_str()).collect();
                return Err(GqlError::at(
                    cycle.first().and_then(|f| f.loc),
                    format!(
                        "Cannot reference Input Object {} within itself through a series of non-null fields: {}.",
                        go_quote(&ft.name),
                        go_quote(&names.join("."))
                    ),
                ));
            }
            detect(schema, ft, visited, path, index)?;
            path.pop();
        }
        index.remove(def.name.as_str());
        Ok(())
    }
    let mut visited = BTreeSet::new();
    let mut path = Vec::new();
    let mut index = BTreeMap::new();
    for def in schema.types.values() {
        if def.kind == "INPUT_OBJECT" {
            detect(schema, def, &mut visited, &mut path, &mut index)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Query validation: gqlparser's walker with its default rules, run in rule-name order

fn or_list(items: &[String]) -> String {
    let items: Vec<&String> = items.iter().take(5).collect();
    if let [a, b] = items.as_slice() {
        return format!("{a} or {b}");
    }
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i != 0 {
            out.push_str(if i == items.len() - 1 { ", or " } else { ", " });
        }
        out.push_str(item);
    }
    out
}

fn quoted_or_list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    or_list(&q)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// gqlparser's `SuggestionList`: options within a lexical distance of the input, closest first.
fn suggestion_list(input: &str, options: &[String]) -> Vec<String> {
    let threshold = (input.len() * 2 / 5 + 1).max(1);
    let mut found: Vec<(usize, String)> = options
        .iter()
        .filter_map(|o| {
            let d = if input == o {
                0
            } else if input.to_lowercase() == o.to_lowercase() {
                1
            } else {
                levenshtein(&input.to_lowercase(), &o.to_lowercase())
            };
            (d <= threshold).then(|| (d, o.clone()))
        })
        .collect();
    found.sort_by_key(|(d, _)| *d);
    found.into_iter().map(|(_, o)| o).collect()
}

fn suggest_quoted(prefix: &str, typed: &str, options: &[String]) -> String {
    let s = suggestion_list(typed, options);
    if s.is_empty() {
        String::new()
    } else {
        format!(" {prefix} {}?", quoted_or_list(&s))
    }
}

struct Walker<'a> {
    schema: &'a Schema,
    doc: &'a QueryDoc,
    errors: Vec<GqlError>,
    fragments: BTreeMap<&'a str, &'a Fragment>,
    validated_spreads: BTreeSet<String>,
    current_op: Option<usize>,
    used: BTreeSet<(usize, usize)>,
    visited_frags: BTreeSet<String>,
    in_fragment_def: bool,
    fragment_used: BTreeSet<String>,
    misplaced_directives: BTreeSet<(String, Loc)>,
    seen_fragments: BTreeSet<String>,
    seen_ops: BTreeSet<String>,
    depth_visiting: BTreeMap<String, i64>,
    depth_memo: BTreeMap<(String, i64), bool>,
}

fn validate_query(schema: &Schema, doc: &QueryDoc) -> Vec<GqlError> {
    let mut w = Walker {
        schema,
        doc,
        errors: Vec::new(),
        fragments: BTreeMap::new(),
        validated_spreads: BTreeSet::new(),
        current_op: None,
        used: BTreeSet::new(),
        visited_frags: BTreeSet::new(),
        in_fragment_def: false,
        fragment_used: BTreeSet::new(),
        misplaced_directives: BTreeSet::new(),
        seen_fragments: BTreeSet::new(),
        seen_ops: BTreeSet::new(),
        depth_visiting: BTreeMap::new(),
        depth_memo: BTreeMap::new(),
    };
    for f in &doc.fragments {
        w.fragments.entry(f.name.as_str()).or_insert(f);
    }
    for (i, op) in doc.operations.iter().enumerate() {
        w.validated_spreads.clear();
        w.walk_operation(i, op);
    }
    for f in &doc.fragments {
        w.validated_spreads.clear();
        w.walk_fragment(f);
    }
    w.errors
}

impl<'a> Walker<'a> {
    fn add(&mut self, loc: Loc, msg: String) {
        self.errors.push(GqlError::at(loc, msg));
    }

    fn ty(&self, name: &str) -> Option<&'a Def> {
        self.schema.types.get(name)
    }

    fn var_def(&self, name: &str) -> Option<(usize, usize, &'a VarDef)> {
        let oi = self.current_op?;
        let op = self.doc.operations.get(oi)?;
        op.var_defs
            .iter()
            .enumerate()
            .find(|(_, v)| v.variable == name)
            .map(|(vi, v)| (oi, vi, v))
    }

    fn walk_operation(&mut self, index: usize, op: &'a Operation) {
        self.current_op = Some(index);
        for v in &op.var_defs {
            // KnownTypeNames
            if self.ty(v.ty.name()).is_none() {
                self.add(v.loc, format!("Unknown type \"{}\".", v.ty.name()));
            }
        }
        for v in &op.var_defs {
            let def = self.ty(v.ty.name());
            if let Some(d) = &v.default {
                self.walk_value(d, Some(&v.ty), def, false);
            }
            self.walk_directives(def, &v.directives, "VARIABLE_DEFINITION");
        }
        let root = self.schema.root(&op.operation);
        let loc = match op.operation.as_str() {
            "mutation" => "MUTATION",
            "subscription" => "SUBSCRIPTION",
            _ => "QUERY",
        };
        self.walk_directives(root, &op.directives, loc);
        self.walk_selection_set(root, &op.sel);
        self.on_operation(index, op, root);
        self.current_op = None;
    }

    fn on_operation(&mut self, index: usize, op: &'a Operation, root: Option<&'a Def>) {
        // KnownRootType
        if root.is_none() {
            self.add(
                op.loc,
                format!(
                    "Schema does not support operation type \"{}\"",
                    op.operation
                ),
            );
        }
        // LoneAnonymousOperation
        if op.name.is_empty() && self.doc.operations.len() > 1 {
            self.add(
                op.loc,
                "This anonymous operation must be the only defined operation.".to_owned(),
            );
        }
        // NoUnusedVariables
        for (vi, v) in op.var_defs.iter().enumerate() {
            if v.used || self.used.contains(&(index, vi)) {
                continue;
            }
            if op.name.is_empty() {
                self.add(
                    v.loc,
                    format!("Variable \"${}\" is never used.", v.variable),
                );
            } else {
                self.add(
                    v.loc,
                    format!(
                        "Variable \"${}\" is never used in operation \"{}\".",
                        v.variable, op.name
                    ),
                );
            }
        }
        // SingleFieldSubscriptions
        if self.schema.subscription.is_some() && op.operation == "subscription" {
            let mut fields: Vec<(String, Loc)> = Vec::new();
            let mut in_frag = BTreeSet::new();
            self.top_fields(&op.sel, &mut fields, &mut in_frag);
            let mut seen = BTreeSet::new();
            fields.retain(|(n, _)| seen.insert(n.clone()));
            let name = if op.name.is_empty() {
                "Anonymous Subscription".to_owned()
            } else {
                format!("Subscription {}", go_quote(&op.name))
            };
            if let Some((_, loc)) = fields.get(1) {
                self.add(
                    *loc,
                    format!("{name} must select only one top level field."),
                );
            }
            for (n, loc) in &fields {
                if n.starts_with("__") {
                    self.add(
                        *loc,
                        format!("{name} must not select an introspection top level field."),
                    );
                }
            }
        }
        // UniqueOperationNames
        if !self.seen_ops.insert(op.name.clone()) {
            self.add(
                op.loc,
                format!("There can be only one operation named \"{}\".", op.name),
            );
        }
        // UniqueVariableNames
        let mut seen = BTreeSet::new();
        for v in &op.var_defs {
            if !seen.insert(v.variable.as_str()) {
                self.add(
                    v.loc,
                    format!("There can be only one variable named \"${}\".", v.variable),
                );
            }
        }
        // VariablesAreInputTypes
        for v in &op.var_defs {
            if let Some(d) = self.ty(v.ty.name()) {
                if !d.is_input() {
                    self.add(
                        v.loc,
                        format!(
                            "Variable \"${}\" cannot be non-input type \"{}\".",
                            v.variable,
                            v.ty.text()
                        ),
                    );
                }
            }
        }
    }

    /// Returns false where gqlparser stops collecting (a spread of an unknown fragment).
    fn top_fields(
        &self,
        sel: &'a [Sel],
        out: &mut Vec<(String, Loc)>,
        in_frag: &mut BTreeSet<String>,
    ) -> bool {
        for s in sel {
            match s {
                Sel::Field(f) => out.push((f.name.clone(), f.loc)),
                Sel::Inline(i) => {
                    self.top_fields(&i.sel, out, in_frag);
                }
                Sel::Spread(sp) => {
                    let Some(fd) = self.fragments.get(sp.name.as_str()) else {
                        return false;
                    };
                    if in_frag.insert(fd.name.clone()) {
                        self.top_fields(&fd.sel, out, in_frag);
                    }
                }
            }
        }
        true
    }

    fn walk_fragment(&mut self, f: &'a Fragment) {
        let def = self.ty(&f.type_cond);
        self.walk_directives(def, &f.directives, "FRAGMENT_DEFINITION");
        self.walk_selection_set(def, &f.sel);
        // FragmentsOnCompositeTypes
        if let Some(d) = def {
            if !f.type_cond.is_empty() && !d.is_composite() {
                self.add(
                    f.loc,
                    format!(
                        "Fragment \"{}\" cannot condition on non composite type \"{}\".",
                        f.name, f.type_cond
                    ),
                );
            }
        }
        // KnownTypeNames
        if def.is_none() {
            let names: Vec<String> = self.schema.types.keys().cloned().collect();
            let hint = suggest_quoted("Did you mean", &f.type_cond, &names);
            self.add(f.loc, format!("Unknown type \"{}\".{hint}", f.type_cond));
        }
        // NoFragmentCycles
        let mut path: Vec<&'a Spread> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        self.fragment_cycles(f, &mut path, &mut index, 0);
        // NoUnusedFragments
        self.in_fragment_def = true;
        if !self.fragment_used.contains(&f.name) {
            self.add(f.loc, format!("Fragment \"{}\" is never used.", f.name));
        }
        // UniqueFragmentNames
        if !self.seen_fragments.insert(f.name.clone()) {
            self.add(
                f.loc,
                format!("There can be only one fragment named \"{}\".", f.name),
            );
        }
    }

    fn fragment_cycles(
        &mut self,
        f: &'a Fragment,
        path: &mut Vec<&'a Spread>,
        index: &mut BTreeMap<String, usize>,
        depth: usize,
    ) {
        if depth > MAX_NESTING || !self.visited_frags.insert(f.name.clone()) {
            return;
        }
        let spreads = fragment_spreads(&f.sel);
        if spreads.is_empty() {
            return;
        }
        index.insert(f.name.clone(), path.len());
        for sp in spreads {
            path.push(sp);
            match index.get(&sp.name).copied() {
                None => {
                    if let Some(next) = self.doc.fragments.iter().find(|x| x.name == sp.name) {
                        self.fragment_cycles(next, path, index, depth + 1);
                    }
                }
                Some(start) => {
                    let names: Vec<String> = path
                        .get(start..path.len().saturating_sub(1))
                        .unwrap_or_default()
                        .iter()
                        .map(|s| format!("\"{}\"", s.name))
                        .collect();
                    let via = if names.is_empty() {
                        String::new()
                    } else {
                        format!(" via {}", names.join(", "))
                    };
                    self.add(
                        sp.loc,
                        format!("Cannot spread fragment \"{}\" within itself{via}.", sp.name),
                    );
                }
            }
            path.pop();
        }
        index.remove(&f.name);
    }

    fn walk_directives(&mut self, parent: Option<&'a Def>, dirs: &'a [Directive], location: &str) {
        let _ = parent;
        for d in dirs {
            let def = self.schema.directives.get(&d.name);
            for a in &d.args {
                let ad = def.and_then(|def| def.args.iter().find(|x| x.name == a.name));
                self.walk_argument(ad, a);
            }
            // KnownArgumentNames
            if let Some(def) = def {
                for a in &d.args {
                    if !def.args.iter().any(|x| x.name == a.name) {
                        let names: Vec<String> = def.args.iter().map(|x| x.name.clone()).collect();
                        let hint = suggest_quoted("Did you mean", &a.name, &names);
                        self.add(
                            d.loc,
                            format!(
                                "Unknown argument \"{}\" on directive \"@{}\".{hint}",
                                a.name, d.name
                            ),
                        );
                    }
                }
            }
            // KnownDirectives
            match def {
                None => self.add(d.loc, format!("Unknown directive \"@{}\".", d.name)),
                Some(def) if !def.locations.iter().any(|l| l == location) => {
                    if self.misplaced_directives.insert((d.name.clone(), d.loc)) {
                        self.add(
                            d.loc,
                            format!("Directive \"@{}\" may not be used on {location}.", d.name),
                        );
                    }
                }
                Some(_) => {}
            }
            // ProvidedRequiredArguments
            if let Some(def) = def {
                for ad in &def.args {
                    if ad.ty.non_null
                        && ad.default.is_none()
                        && !d.args.iter().any(|a| a.name == ad.name)
                    {
                        self.add(
                            d.loc,
                            format!(
                                "Directive \"@{}\" argument \"{}\" of type \"{}\" is required, but it was not provided.",
                                def.name,
                                ad.name,
                                ad.ty.text()
                            ),
                        );
                    }
                }
            }
            // UniqueArgumentNames
            self.unique_args(&d.args);
        }
        // UniqueDirectivesPerLocation
        let mut seen = BTreeSet::new();
        for d in dirs {
            let repeatable = self
                .schema
                .directives
                .get(&d.name)
                .is_some_and(|x| x.repeatable);
            if !repeatable && seen.contains(&d.name) {
                self.add(
                    d.loc,
                    format!(
                        "The directive \"@{}\" can only be used once at this location.",
                        d.name
                    ),
                );
            }
            seen.insert(d.name.clone());
        }
    }

    fn unique_args(&mut self, args: &[Argument]) {
        let mut seen = BTreeSet::new();
        for a in args {
            if !seen.insert(a.name.as_str()) {
                self.add(
                    a.loc,
                    format!("There can be only one argument named \"{}\".", a.name),
                );
            }
        }
    }

    fn walk_argument(&mut self, def: Option<&'a ArgDef>, a: &'a Argument) {
        let Some(v) = &a.value else { return };
        match def {
            Some(d) => {
                let has_default = d.default.as_ref().is_some_and(|x| x.kind != K_NULL);
                self.walk_value(v, Some(&d.ty), self.ty(d.ty.name()), has_default);
            }
            None => self.walk_value(v, None, None, false),
        }
    }

    fn walk_value(
        &mut self,
        v: &'a Val,
        expected: Option<&Ty>,
        def: Option<&'a Def>,
        has_default: bool,
    ) {
        if v.kind == K_VARIABLE {
            if let Some((oi, vi, _)) = self.var_def(&v.raw) {
                self.used.insert((oi, vi));
            }
        }
        if v.kind == K_OBJECT {
            for c in &v.children {
                let Some(cv) = &c.value else { continue };
                match def.and_then(|d| d.field(&c.name)) {
                    Some(fd) => {
                        let hd = fd.default.as_ref().is_some_and(|x| x.kind != K_NULL);
                        self.walk_value(cv, Some(&fd.ty), self.ty(fd.ty.name()), hd);
                    }
                    None => self.walk_value(cv, None, None, false),
                }
            }
        }
        if v.kind == K_LIST {
            for c in &v.children {
                let Some(cv) = &c.value else { continue };
                match expected.and_then(|e| e.elem.as_deref()) {
                    Some(elem) => self.walk_value(cv, Some(elem), def, false),
                    None => self.walk_value(cv, None, None, false),
                }
            }
        }
        self.on_value(v, expected, def, has_default);
    }

    fn on_value(
        &mut self,
        v: &'a Val,
        expected: Option<&Ty>,
        def: Option<&'a Def>,
        has_default: bool,
    ) {
        let var_def = if v.kind == K_VARIABLE {
            self.var_def(&v.raw).map(|(_, _, d)| d)
        } else {
            None
        };
        // NoUndefinedVariables
        if let (Some(oi), K_VARIABLE, None) = (self.current_op, v.kind, var_def) {
            let op_name = self
                .doc
                .operations
                .get(oi)
                .map(|o| o.name.clone())
                .unwrap_or_default();
            if op_name.is_empty() {
                self.add(v.loc, format!("Variable \"{}\" is not defined.", v.text()));
            } else {
                self.add(
                    v.loc,
                    format!(
                        "Variable \"{}\" is not defined by operation \"{op_name}\".",
                        v.text()
                    ),
                );
            }
        }
        // UniqueInputFieldNames
        if v.kind == K_OBJECT {
            let mut seen = BTreeSet::new();
            for c in &v.children {
                if !seen.insert(c.name.as_str()) {
                    self.add(
                        c.loc,
                        format!("There can be only one input field named \"{}\".", c.name),
                    );
                }
            }
        }
        // ValuesOfCorrectType
        if let (Some(def), Some(expected)) = (def, expected) {
            self.values_of_correct_type(v, expected, def);
        }
        // VariablesInAllowedPosition
        if let (K_VARIABLE, Some(expected), Some(vd), Some(_)) =
            (v.kind, expected, var_def, self.current_op)
        {
            let mut tmp = expected.clone();
            if vd.default.as_ref().is_some_and(|d| d.kind != K_NULL) && expected.non_null {
                tmp.non_null = false;
            }
            if has_default {
                tmp.non_null = false;
            }
            if !vd.ty.is_compatible(&tmp) {
                self.add(
                    v.loc,
                    format!(
                        "Variable \"{}\" of type \"{}\" used in position expecting type \"{}\".",
                        v.text(),
                        vd.ty.text(),
                        expected.text()
                    ),
                );
            }
        }
        if let (K_OBJECT, Some(def)) = (v.kind, def) {
            if def.directives.iter().any(|d| d.name == "oneOf") {
                for c in &v.children {
                    let Some(cv) = c.value.as_ref().filter(|cv| cv.kind == K_VARIABLE) else {
                        continue;
                    };
                    let Some((_, _, vd)) = self.var_def(&cv.raw) else {
                        continue;
                    };
                    if !vd.ty.non_null {
                        self.add(
                            vd.loc.or(cv.loc),
                            format!(
                                "Variable \"{}\" is of type \"{}\" but must be non-nullable to be used for OneOf Input Object \"{}\".",
                                cv.text(),
                                vd.ty.text(),
                                def.name
                            ),
                        );
                    }
                }
            }
        }
    }

    fn unexpected_type(&mut self, v: &Val, expected: &Ty, def: &Def) {
        let t = expected.text();
        let msg = match t.as_str() {
            "Int" | "Int!" => {
                let digits = v.raw.strip_prefix(['-', '+']).unwrap_or(&v.raw);
                let int_syntax = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
                if int_syntax && v.raw.parse::<i32>().is_err() {
                    format!(
                        "Int cannot represent non 32-bit signed integer value: {}",
                        v.text()
                    )
                } else {
                    format!("Int cannot represent non-integer value: {}", v.text())
                }
            }
            "String" | "String!" | "[String]" => {
                format!("String cannot represent a non string value: {}", v.text())
            }
            "Boolean" | "Boolean!" => {
                format!("Boolean cannot represent a non boolean value: {}", v.text())
            }
            "Float" | "Float!" => format!("Float cannot represent non numeric value: {}", v.text()),
            "ID" | "ID!" => format!(
                "ID cannot represent a non-string and non-integer value: {}",
                v.text()
            ),
            _ if def.kind == "ENUM" => format!(
                "Enum \"{t}\" cannot represent non-enum value: {}.",
                v.text()
            ),
            _ => format!("Expected value of type \"{t}\", found {}.", v.text()),
        };
        self.add(v.loc, msg);
    }

    fn values_of_correct_type(&mut self, v: &'a Val, expected: &Ty, def: &'a Def) {
        if v.kind == K_NULL && expected.non_null {
            self.add(
                v.loc,
                format!(
                    "Expected value of type \"{}\", found {}.",
                    expected.text(),
                    v.text()
                ),
            );
        }
        let builtin_scalar = matches!(
            def.name.as_str(),
            "Int" | "Float" | "String" | "Boolean" | "ID"
        );
        if def.kind == "SCALAR" && !builtin_scalar {
            return;
        }
        let enums: Vec<String> = if def.kind == "ENUM" {
            def.enum_values.iter().map(|e| e.name.clone()).collect()
        } else {
            Vec::new()
        };
        if literal_error(v) {
            self.unexpected_type(v, expected, def);
        }
        let named = |names: &[&str]| names.contains(&def.name.as_str());
        match v.kind {
            K_NULL | K_VARIABLE => {}
            K_LIST if expected.elem.is_none() => self.unexpected_type(v, expected, def),
            K_INT if !named(&["Int", "Float", "ID"]) => self.unexpected_type(v, expected, def),
            K_FLOAT if !named(&["Float"]) => self.unexpected_type(v, expected, def),
            K_STRING | K_BLOCK => {
                if def.kind == "ENUM" {
                    let hint = suggest_quoted("Did you mean the enum value", &v.raw, &enums);
                    self.add(
                        v.loc,
                        format!(
                            "Enum \"{}\" cannot represent non-enum value: {}.{hint}",
                            expected.text(),
                            v.text()
                        ),
                    );
                } else if !named(&["String", "ID"]) {
                    self.unexpected_type(v, expected, def);
                }
            }
            K_ENUM => {
                if def.kind != "ENUM" {
                    self.unexpected_type(v, expected, def);
                } else if !def.enum_values.iter().any(|e| e.name == v.raw) {
                    let hint = suggest_quoted("Did you mean the enum value", &v.raw, &enums);
                    self.add(
                        v.loc,
                        format!(
                            "Value \"{}\" does not exist in \"{}\" enum.{hint}",
                            v.text(),
                            expected.text()
                        ),
                    );
                }
            }
            K_BOOLEAN if !named(&["Boolean"]) => self.unexpected_type(v, expected, def),
            K_OBJECT => {
                for f in &def.fields {
                    if f.ty.non_null
                        && f.default.is_none()
                        && !v.children.iter().any(|c| c.name == f.name)
                    {
                        self.add(
                            v.loc,
                            format!(
                                "Field \"{}.{}\" of required type \"{}\" was not provided.",
                                def.name,
                                f.name,
                                f.ty.text()
                            ),
                        );
                    }
                }
                if def.directives.iter().any(|d| d.name == "oneOf") {
                    if v.children.len() != 1 {
                        self.add(
                            v.loc,
                            format!(
                                "OneOf Input Object \"{}\" must specify exactly one key.",
                                def.name
                            ),
                        );
                    } else if let Some(c) = v.children.first() {
                        if c.value.as_ref().is_none_or(|cv| cv.kind == K_NULL) {
                            let first = def
                                .fields
                                .first()
                                .map(|f| f.name.clone())
                                .unwrap_or_default();
                            self.add(
                                c.value.as_ref().and_then(|cv| cv.loc),
                                format!("Field \"{}.{first}\" must be non-null.", def.name),
                            );
                        }
                    }
                }
                for c in &v.children {
                    if def.field(&c.name).is_none() {
                        let names: Vec<String> =
                            def.fields.iter().map(|f| f.name.clone()).collect();
                        let hint = suggest_quoted("Did you mean", &c.name, &names);
                        self.add(
                            c.loc,
                            format!(
                                "Field \"{}\" is not defined by type \"{}\".{hint}",
                                c.name, def.name
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn walk_selection_set(&mut self, parent: Option<&'a Def>, sel: &'a [Sel]) {
        for s in sel {
            self.walk_selection(parent, s);
        }
    }

    fn walk_selection(&mut self, parent: Option<&'a Def>, s: &'a Sel) {
        match s {
            Sel::Field(f) => self.walk_field(parent, f),
            Sel::Inline(i) => {
                let next = if i.type_cond.is_empty() {
                    parent
                } else {
                    self.ty(&i.type_cond)
                };
                self.walk_directives(next, &i.directives, "INLINE_FRAGMENT");
                self.walk_selection_set(next, &i.sel);
                // FragmentsOnCompositeTypes
                if let Some(t) = self.ty(&i.type_cond) {
                    if !t.is_composite() {
                        self.add(
                            i.loc,
                            format!(
                                "Fragment cannot condition on non composite type \"{}\".",
                                i.type_cond
                            ),
                        );
                    }
                }
                // KnownTypeNames
                if !i.type_cond.is_empty() && self.ty(&i.type_cond).is_none() {
                    self.add(i.loc, format!("Unknown type \"{}\".", i.type_cond));
                }
                // PossibleFragmentSpreads
                if let Some(p) = parent {
                    if !self.spread_possible(p, &i.type_cond) {
                        self.add(
                            i.loc,
                            format!(
                                "Fragment cannot be spread here as objects of type \"{}\" can never be of type \"{}\".",
                                p.name, i.type_cond
                            ),
                        );
                    }
                }
            }
            Sel::Spread(sp) => {
                let fd = self.fragments.get(sp.name.as_str()).copied();
                let next = fd.and_then(|f| self.ty(&f.type_cond));
                self.walk_directives(next, &sp.directives, "FRAGMENT_SPREAD");
                if let Some(fd) = fd {
                    if self.validated_spreads.insert(fd.name.clone()) {
                        self.walk_directives(next, &fd.directives, "FRAGMENT_DEFINITION");
                        self.walk_selection_set(next, &fd.sel);
                    }
                }
                // KnownFragmentNames
                if fd.is_none() {
                    self.add(sp.loc, format!("Unknown fragment \"{}\".", sp.name));
                }
                // NoUnusedFragments
                if !self.in_fragment_def {
                    self.fragment_used.insert(sp.name.clone());
                }
                // PossibleFragmentSpreads
                if let (Some(fd), Some(p)) = (fd, parent) {
                    if !self.spread_possible(p, &fd.type_cond) {
                        self.add(
                            sp.loc,
                            format!(
                                "Fragment \"{}\" cannot be spread here as objects of type \"{}\" can never be of type \"{}\".",
                                sp.name, p.name, fd.type_cond
                            ),
                        );
                    }
                }
            }
        }
    }

    fn spread_possible(&self, parent: &Def, frag_type: &str) -> bool {
        let parents: Vec<&Def> = match parent.kind.as_str() {
            "OBJECT" => vec![parent],
            "INTERFACE" | "UNION" => self.schema.possible_types(&parent.name),
            _ => return true,
        };
        let Some(ft) = self.ty(frag_type) else {
            return true;
        };
        if !ft.is_composite() {
            return true;
        }
        let frags = self.schema.possible_types(&ft.name);
        frags
            .iter()
            .any(|f| parents.iter().any(|p| p.name == f.name))
    }

    fn walk_field(&mut self, parent: Option<&'a Def>, f: &'a Field) {
        let typename;
        let def: Option<&FieldDef> = if f.name == "__typename" {
            typename = FieldDef {
                name: "__typename".into(),
                ty: Ty {
                    named: "String".into(),
                    ..Ty::default()
                },
                ..FieldDef::default()
            };
            Some(&typename)
        } else {
            parent.and_then(|p| p.field(&f.name))
        };
        let next = def.and_then(|d| self.ty(d.ty.name()));
        for a in &f.args {
            let ad = def.and_then(|d| d.args.iter().find(|x| x.name == a.name));
            match ad {
                Some(ad) => {
                    let Some(v) = &a.value else { continue };
                    let has_default = ad.default.as_ref().is_some_and(|x| x.kind != K_NULL);
                    self.walk_value(v, Some(&ad.ty), self.ty(ad.ty.name()), has_default);
                }
                None => self.walk_argument(None, a),
            }
        }
        self.walk_directives(next, &f.directives, "FIELD");
        self.walk_selection_set(next, &f.sel);

        // FieldsOnCorrectType
        if let (Some(p), None) = (parent, def) {
            let mut msg = format!("Cannot query field \"{}\" on type \"{}\".", f.name, p.name);
            let types = self.suggested_types(p, &f.name);
            if !types.is_empty() {
                msg.push_str(&format!(
                    " Did you mean to use an inline fragment on {}?",
                    quoted_or_list(&types)
                ));
            } else if matches!(p.kind.as_str(), "OBJECT" | "INTERFACE") {
                let names: Vec<String> = p.fields.iter().map(|x| x.name.clone()).collect();
                let s = suggestion_list(&f.name, &names);
                if !s.is_empty() {
                    msg.push_str(&format!(" Did you mean {}?", quoted_or_list(&s)));
                }
            }
            self.add(f.loc, msg);
        }
        if let Some(def) = def {
            // KnownArgumentNames
            if let Some(p) = parent {
                for a in &f.args {
                    if !def.args.iter().any(|x| x.name == a.name) {
                        let names: Vec<String> = def.args.iter().map(|x| x.name.clone()).collect();
                        let hint = suggest_quoted("Did you mean", &a.name, &names);
                        self.add(
                            f.loc,
                            format!(
                                "Unknown argument \"{}\" on field \"{}.{}\".{hint}",
                                a.name, p.name, f.name
                            ),
                        );
                    }
                }
            }
        }
        // MaxIntrospectionDepth
        if (f.name == "__schema" || f.name == "__type") && self.depth_field(f, 0) {
            self.add(f.loc, "Maximum introspection depth exceeded".to_owned());
        }
        if let Some(def) = def {
            // ProvidedRequiredArguments
            for ad in &def.args {
                if ad.ty.non_null
                    && ad.default.is_none()
                    && !f.args.iter().any(|a| a.name == ad.name)
                {
                    self.add(
                        f.loc,
                        format!(
                            "Field \"{}\" argument \"{}\" of type \"{}\" is required, but it was not provided.",
                            f.name,
                            ad.name,
                            ad.ty.text()
                        ),
                    );
                }
            }
            // ScalarLeafs
            if let Some(ft) = self.ty(def.ty.name()) {
                if ft.is_leaf() && !f.sel.is_empty() {
                    self.add(
                        f.loc,
                        format!("Field \"{}\" must not have a selection since type \"{}\" has no subfields.", f.name, ft.name),
                    );
                }
                if !ft.is_leaf() && f.sel.is_empty() {
                    self.add(
                        f.loc,
                        format!(
                            "Field \"{}\" of type \"{}\" must have a selection of subfields. Did you mean \"{} {{ ... }}\"?",
                            f.name,
                            def.ty.text(),
                            f.name
                        ),
                    );
                }
            }
        }
        // UniqueArgumentNames
        self.unique_args(&f.args);
    }

    fn suggested_types(&self, parent: &Def, field: &str) -> Vec<String> {
        if !parent.is_abstract() {
            return Vec::new();
        }
        let mut objects = Vec::new();
        let mut interfaces: Vec<String> = Vec::new();
        let mut usage: BTreeMap<String, usize> = BTreeMap::new();
        for pt in self.schema.possible_types(&parent.name) {
            if pt.field(field).is_none() {
                continue;
            }
            objects.push(pt.name.clone());
            for i in &pt.interfaces {
                if self.ty(i).is_some_and(|d| d.field(field).is_some()) {
                    let n = usage.entry(i.clone()).or_insert(0);
                    if *n == 0 {
                        interfaces.push(i.clone());
                    }
                    *n += 1;
                }
            }
        }
        interfaces.extend(objects);
        interfaces.sort_by(|a, b| {
            let (ua, ub) = (
                usage.get(a).copied().unwrap_or(0),
                usage.get(b).copied().unwrap_or(0),
            );
            ub.cmp(&ua).then_with(|| a.cmp(b))
        });
        interfaces
    }

    fn depth_field(&mut self, f: &'a Field, depth: i64) -> bool {
        let mut depth = depth;
        if matches!(
            f.name.as_str(),
            "fields" | "interfaces" | "possibleTypes" | "inputFields"
        ) {
            depth += 1;
            if depth >= 3 {
                return true;
            }
        }
        self.depth_set(&f.sel, depth)
    }

    fn depth_set(&mut self, sel: &'a [Sel], depth: i64) -> bool {
        for s in sel {
            let exceeded = match s {
                Sel::Field(f) => self.depth_field(f, depth),
                Sel::Inline(i) => self.depth_set(&i.sel, depth),
                Sel::Spread(sp) => {
                    if let Some(&entry) = self.depth_visiting.get(&sp.name) {
                        depth > entry
                    } else if let Some(fd) = self.fragments.get(sp.name.as_str()).copied() {
                        let key = (sp.name.clone(), depth);
                        if let Some(&m) = self.depth_memo.get(&key) {
                            m
                        } else {
                            self.depth_visiting.insert(sp.name.clone(), depth);
                            let r = self.depth_set(&fd.sel, depth);
                            self.depth_visiting.remove(&sp.name);
                            self.depth_memo.insert(key, r);
                            r
                        }
                    } else {
                        false
                    }
                }
            };
            if exceeded {
                return true;
            }
        }
        false
    }
}

/// Whether gqlparser's `Value.Value(nil)` fails for a literal (an Int or Float out of range).
fn literal_error(v: &Val) -> bool {
    match v.kind {
        K_INT => v.raw.parse::<i64>().is_err(),
        K_FLOAT => v.raw.parse::<f64>().map_or(true, |f| f.is_infinite()),
        K_LIST | K_OBJECT => v
            .children
            .iter()
            .any(|c| c.value.as_ref().is_some_and(literal_error)),
        _ => false,
    }
}

fn fragment_spreads(sel: &[Sel]) -> Vec<&Spread> {
    let mut out = Vec::new();
    let mut stack = vec![sel];
    while let Some(set) = stack.pop() {
        for s in set {
            match s {
                Sel::Spread(sp) => out.push(sp),
                Sel::Field(f) => stack.push(&f.sel),
                Sel::Inline(i) => stack.push(&i.sel),
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// AST objects as input: Go's `json.Unmarshal` into gqlparser's types

type Obj = BTreeMap<Value, Value>;

fn decode_err(what: &str) -> GqlError {
    GqlError::at(None, format!("json: cannot unmarshal {what}"))
}

/// A struct field by name: gqlparser's hand-written decoders match keys exactly, Go's default
/// decoder also accepts any casing. JSON null leaves the field unset.
fn get<'v>(o: &'v Obj, key: &str, exact: bool) -> Option<&'v Value> {
    let found = o.get(&Value::str(key)).or_else(|| {
        if exact {
            return None;
        }
        o.iter()
            .find(|(k, _)| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(key)))
            .map(|(_, v)| v)
    });
    found.filter(|v| !matches!(v, Value::Null))
}

fn as_obj<'v>(v: &'v Value, what: &str) -> Result<&'v Obj, GqlError> {
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(decode_err(&format!("{} into {what}", v.type_name()))),
    }
}

fn d_str(o: &Obj, key: &str, exact: bool) -> Result<String, GqlError> {
    match get(o, key, exact) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(decode_err(&format!(
            "{} into string field {key}",
            v.type_name()
        ))),
    }
}

fn d_bool(o: &Obj, key: &str, exact: bool) -> Result<bool, GqlError> {
    match get(o, key, exact) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(decode_err(&format!(
            "{} into bool field {key}",
            v.type_name()
        ))),
    }
}

fn d_list<T>(
    o: &Obj,
    key: &str,
    exact: bool,
    f: impl Fn(&Value) -> Result<T, GqlError>,
) -> Result<Vec<T>, GqlError> {
    match get(o, key, exact) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(f).collect(),
        Some(v) => Err(decode_err(&format!(
            "{} into list field {key}",
            v.type_name()
        ))),
    }
}

fn d_strings(o: &Obj, key: &str) -> Result<Vec<String>, GqlError> {
    d_list(o, key, false, |v| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        other => Err(decode_err(&format!("{} into string", other.type_name()))),
    })
}

fn d_comments(o: &Obj, key: &str) -> Result<Comments, GqlError> {
    let Some(v) = get(o, key, false) else {
        return Ok(None);
    };
    let g = as_obj(v, "CommentGroup")?;
    let list = d_list(g, "List", false, |c| {
        let c = as_obj(c, "Comment")?;
        d_str(c, "Value", false)
    })?;
    Ok(Some(list))
}

fn d_ty(v: &Value, depth: usize) -> Result<Ty, GqlError> {
    if depth > MAX_NESTING {
        return Err(decode_err("deeply nested type"));
    }
    let o = as_obj(v, "Type")?;
    Ok(Ty {
        named: d_str(o, "NamedType", false)?,
        elem: get(o, "Elem", false)
            .map(|e| d_ty(e, depth + 1).map(Box::new))
            .transpose()?,
        non_null: d_bool(o, "NonNull", false)?,
        loc: None,
    })
}

fn d_opt_ty(o: &Obj, key: &str) -> Result<Ty, GqlError> {
    get(o, key, false).map_or(Ok(Ty::default()), |v| d_ty(v, 0))
}

fn d_val(v: &Value, depth: usize) -> Result<Val, GqlError> {
    if depth > MAX_NESTING {
        return Err(decode_err("deeply nested value"));
    }
    let o = as_obj(v, "Value")?;
    let kind = match get(o, "Kind", false) {
        None => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|_| matches!(n, Number::Int(_)))
            .ok_or_else(|| decode_err("number into int field Kind"))?,
        Some(other) => {
            return Err(decode_err(&format!(
                "{} into int field Kind",
                other.type_name()
            )))
        }
    };
    let children = d_list(o, "Children", false, |c| {
        let co = as_obj(c, "ChildValue")?;
        Ok(ChildVal {
            name: d_str(co, "Name", false)?,
            value: get(co, "Value", false)
                .map(|x| d_val(x, depth + 1))
                .transpose()?,
            loc: None,
            comment: d_comments(co, "Comment")?,
        })
    })?;
    Ok(Val {
        raw: d_str(o, "Raw", false)?,
        children,
        kind,
        loc: None,
        comment: d_comments(o, "Comment")?,
    })
}

fn d_opt_val(o: &Obj, key: &str, exact: bool) -> Result<Option<Val>, GqlError> {
    get(o, key, exact).map(|v| d_val(v, 0)).transpose()
}

fn d_args(o: &Obj, key: &str, exact: bool) -> Result<Vec<Argument>, GqlError> {
    d_list(o, key, exact, |a| {
        let ao = as_obj(a, "Argument")?;
        Ok(Argument {
            name: d_str(ao, "Name", false)?,
            value: d_opt_val(ao, "Value", false)?,
            loc: None,
            comment: d_comments(ao, "Comment")?,
        })
    })
}

fn d_dirs(o: &Obj, key: &str, exact: bool) -> Result<Vec<Directive>, GqlError> {
    d_list(o, key, exact, |d| {
        let dobj = as_obj(d, "Directive")?;
        Ok(Directive {
            name: d_str(dobj, "Name", false)?,
            args: d_args(dobj, "Arguments", false)?,
            loc: None,
        })
    })
}

fn d_var_defs(o: &Obj, key: &str) -> Result<Vec<VarDef>, GqlError> {
    d_list(o, key, true, |v| {
        let vo = as_obj(v, "VariableDefinition")?;
        Ok(VarDef {
            description: d_str(vo, "Description", false)?,
            variable: d_str(vo, "Variable", false)?,
            ty: d_opt_ty(vo, "Type")?,
            default: d_opt_val(vo, "DefaultValue", false)?,
            directives: d_dirs(vo, "Directives", false)?,
            loc: None,
            comment: d_comments(vo, "Comment")?,
            used: d_bool(vo, "Used", false)?,
        })
    })
}

/// gqlparser tries each selection as a Field first, and any object decodes as one; only a
/// field of the wrong type makes it fall back to a fragment spread, then an inline fragment.
fn d_selection_set(o: &Obj, depth: usize) -> Result<Vec<Sel>, GqlError> {
    if depth > MAX_NESTING {
        return Err(decode_err("deeply nested selection set"));
    }
    let Some(v) = get(o, "SelectionSet", true) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = v else {
        return Err(decode_err(&format!("{} into SelectionSet", v.type_name())));
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(io) = item else { continue };
        let field = (|| -> Result<Field, GqlError> {
            Ok(Field {
                alias: d_str(io, "Alias", true)?,
                name: d_str(io, "Name", true)?,
                args: d_args(io, "Arguments", true)?,
                directives: d_dirs(io, "Directives", true)?,
                sel: d_selection_set(io, depth + 1)?,
                loc: None,
                comment: None,
            })
        })();
        if let Ok(f) = field {
            out.push(Sel::Field(f));
            continue;
        }
        let spread = (|| -> Result<Spread, GqlError> {
            Ok(Spread {
                name: d_str(io, "Name", false)?,
                directives: d_dirs(io, "Directives", false)?,
                loc: None,
                comment: d_comments(io, "Comment")?,
            })
        })();
        if let Ok(sp) = spread {
            out.push(Sel::Spread(sp));
            continue;
        }
        let inline = (|| -> Result<Inline, GqlError> {
            Ok(Inline {
                type_cond: d_str(io, "TypeCondition", true)?,
                directives: d_dirs(io, "Directives", true)?,
                sel: d_selection_set(io, depth + 1)?,
                loc: None,
                comment: None,
            })
        })();
        if let Ok(i) = inline {
            out.push(Sel::Inline(i));
        }
    }
    Ok(out)
}

fn decode_query(v: &Value) -> Result<QueryDoc, GqlError> {
    let o = as_obj(v, "QueryDocument")?;
    let operations = d_list(o, "Operations", false, |op| {
        let oo = as_obj(op, "OperationDefinition")?;
        Ok(Operation {
            description: String::new(),
            operation: d_str(oo, "Operation", true)?,
            name: d_str(oo, "Name", true)?,
            var_defs: d_var_defs(oo, "VariableDefinitions")?,
            directives: d_dirs(oo, "Directives", true)?,
            sel: d_selection_set(oo, 0)?,
            loc: None,
            comment: None,
        })
    })?;
    let fragments = d_list(o, "Fragments", false, |f| {
        let fo = as_obj(f, "FragmentDefinition")?;
        Ok(Fragment {
            description: String::new(),
            name: d_str(fo, "Name", true)?,
            var_defs: d_var_defs(fo, "VariableDefinition")?,
            type_cond: d_str(fo, "TypeCondition", true)?,
            directives: d_dirs(fo, "Directives", true)?,
            sel: d_selection_set(fo, 0)?,
            loc: None,
            comment: None,
        })
    })?;
    Ok(QueryDoc {
        operations,
        fragments,
    })
}

fn d_arg_defs(o: &Obj, key: &str) -> Result<Vec<ArgDef>, GqlError> {
    d_list(o, key, false, |a| {
        let ao = as_obj(a, "ArgumentDefinition")?;
        Ok(ArgDef {
            description: d_str(ao, "Description", false)?,
            name: d_str(ao, "Name", false)?,
            default: d_opt_val(ao, "DefaultValue", false)?,
            ty: d_opt_ty(ao, "Type")?,
            directives: d_dirs(ao, "Directives", false)?,
            loc: None,
            before: d_comments(ao, "BeforeDescriptionComment")?,
            after: d_comments(ao, "AfterDescriptionComment")?,
        })
    })
}

fn d_defs(o: &Obj, key: &str) -> Result<Vec<Def>, GqlError> {
    d_list(o, key, false, |d| {
        let dobj = as_obj(d, "Definition")?;
        Ok(Def {
            kind: d_str(dobj, "Kind", false)?,
            description: d_str(dobj, "Description", false)?,
            name: d_str(dobj, "Name", false)?,
            directives: d_dirs(dobj, "Directives", false)?,
            interfaces: d_strings(dobj, "Interfaces")?,
            fields: d_list(dobj, "Fields", false, |f| {
                let fo = as_obj(f, "FieldDefinition")?;
                Ok(FieldDef {
                    description: d_str(fo, "Description", false)?,
                    name: d_str(fo, "Name", false)?,
                    args: d_arg_defs(fo, "Arguments")?,
                    default: d_opt_val(fo, "DefaultValue", false)?,
                    ty: d_opt_ty(fo, "Type")?,
                    directives: d_dirs(fo, "Directives", false)?,
                    loc: None,
                    before: d_comments(fo, "BeforeDescriptionComment")?,
                    after: d_comments(fo, "AfterDescriptionComment")?,
                })
            })?,
            types: d_strings(dobj, "Types")?,
            enum_values: d_list(dobj, "EnumValues", false, |e| {
                let eo = as_obj(e, "EnumValueDefinition")?;
                Ok(EnumVal {
                    description: d_str(eo, "Description", false)?,
                    name: d_str(eo, "Name", false)?,
                    directives: d_dirs(eo, "Directives", false)?,
                    loc: None,
                    before: d_comments(eo, "BeforeDescriptionComment")?,
                    after: d_comments(eo, "AfterDescriptionComment")?,
                })
            })?,
            loc: None,
            type_locs: Vec::new(),
            builtin: d_bool(dobj, "BuiltIn", false)?,
            before: d_comments(dobj, "BeforeDescriptionComment")?,
            after: d_comments(dobj, "AfterDescriptionComment")?,
            end: d_comments(dobj, "EndOfDefinitionComment")?,
        })
    })
}

fn d_dir_defs(o: &Obj, key: &str) -> Result<Vec<DirDef>, GqlError> {
    d_list(o, key, false, |d| {
        let dobj = as_obj(d, "DirectiveDefinition")?;
        Ok(DirDef {
            description: d_str(dobj, "Description", false)?,
            name: d_str(dobj, "Name", false)?,
            args: d_arg_defs(dobj, "Arguments")?,
            directives: d_dirs(dobj, "Directives", false)?,
            locations: d_strings(dobj, "Locations")?,
            repeatable: d_bool(dobj, "IsRepeatable", false)?,
            loc: None,
            before: d_comments(dobj, "BeforeDescriptionComment")?,
            after: d_comments(dobj, "AfterDescriptionComment")?,
        })
    })
}

fn d_schema_defs(o: &Obj, key: &str) -> Result<Vec<SchemaDef>, GqlError> {
    d_list(o, key, false, |d| {
        let dobj = as_obj(d, "SchemaDefinition")?;
        Ok(SchemaDef {
            description: d_str(dobj, "Description", false)?,
            directives: d_dirs(dobj, "Directives", false)?,
            op_types: d_list(dobj, "OperationTypes", false, |t| {
                let to = as_obj(t, "OperationTypeDefinition")?;
                Ok(OpType {
                    operation: d_str(to, "Operation", false)?,
                    ty: d_str(to, "Type", false)?,
                    loc: None,
                    comment: d_comments(to, "Comment")?,
                })
            })?,
            loc: None,
            before: d_comments(dobj, "BeforeDescriptionComment")?,
            after: d_comments(dobj, "AfterDescriptionComment")?,
            end: d_comments(dobj, "EndOfDefinitionComment")?,
        })
    })
}

fn decode_schema(v: &Value) -> Result<SchemaDoc, GqlError> {
    let o = as_obj(v, "SchemaDocument")?;
    Ok(SchemaDoc {
        schema: d_schema_defs(o, "Schema")?,
        schema_ext: d_schema_defs(o, "SchemaExtension")?,
        directives: d_dir_defs(o, "Directives")?,
        directive_exts: d_dir_defs(o, "DirectiveExtensions")?,
        defs: d_defs(o, "Definitions")?,
        exts: d_defs(o, "Extensions")?,
        comment: d_comments(o, "Comment")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context { now_ns: 0 }
    }

    fn call(name: &str, args: &[Value]) -> BuiltinResult {
        let f: fn(&[Value], &Context) -> BuiltinResult = match name {
            "parse_query" => parse_query,
            "parse_schema" => parse_schema,
            "parse" => parse,
            "parse_and_verify" => parse_and_verify,
            "is_valid" => is_valid,
            "schema_is_valid" => schema_is_valid,
            _ => panic!("{name}"),
        };
        f(args, &ctx())
    }

    /// Runs calls listed in a JSON file (`[{"fn": name, "args": [...]}, ...]`, as a harness
    /// extracts them from OPA's conformance YAML) and prints one JSON result per line.
    #[test]
    #[ignore = "driven by an external harness"]
    fn harness() {
        let Ok(path) = std::env::var("GQL_CALLS") else {
            return;
        };
        let text = std::fs::read_to_string(path).unwrap();
        let calls: serde_json::Value = serde_json::from_str(&text).unwrap();
        for c in calls.as_array().unwrap() {
            let name = c["fn"].as_str().unwrap();
            let args: Vec<Value> = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(Value::from_json)
                .collect();
            match call(name, &args) {
                Ok(Some(v)) => println!("RESULT {}", serde_json::json!({"ok": v.to_json()})),
                Ok(None) => println!("RESULT {}", serde_json::json!({"undefined": true})),
                Err(e) => println!("RESULT {}", serde_json::json!({"err": e.0})),
            }
        }
    }

    fn q(text: &str) -> Value {
        parse_query(&[Value::str(text)], &ctx()).unwrap().unwrap()
    }

    #[test]
    fn parse_query_shape() {
        let got = q("{hero {name}}");
        let want = Value::parse_rego(
            r#"{"Operations": [{"Description": "", "Name": "", "Operation": "query", "SelectionSet": [{"Alias": "hero", "Name": "hero", "SelectionSet": [{"Alias": "name", "Name": "name"}]}]}]}"#,
        )
        .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn parse_errors_match_opa() {
        let e = |t: &str| parse_query(&[Value::str(t)], &ctx()).unwrap_err().0;
        assert_eq!(
            e("{"),
            "Expected Name, found <EOF> in GraphQL string at location 1:2"
        );
        assert_eq!(e("..."), "Unexpected ... in GraphQL string at location 1:1");
        assert_eq!(
            e("{ ...on }"),
            "Expected Name, found } in GraphQL string at location 1:9"
        );
        assert_eq!(
            e("{...{__typename{...{}}}}"),
            "expected at least one definition, found } in GraphQL string at location 1:21"
        );
    }

    #[test]
    fn validation() {
        let schema = Value::str("type Query { a(x: Int!): Int, b: B } type B { c: String }");
        let ok = |query: &str| {
            is_valid(&[Value::str(query), schema.clone()], &ctx())
                .unwrap()
                .unwrap()
        };
        assert_eq!(ok("{ a(x: 1) }"), Value::Bool(true));
        assert_eq!(ok("{ a }"), Value::Bool(false));
        assert_eq!(ok("{ b }"), Value::Bool(false));
        assert_eq!(ok("{ b { c } __typename }"), Value::Bool(true));
        assert_eq!(ok("{ zz }"), Value::Bool(false));
        assert_eq!(ok("query($v: Int!) { a(x: $v) }"), Value::Bool(true));
        assert_eq!(ok("query($v: Int) { a(x: $v) }"), Value::Bool(false));
        let err = parse(&[Value::str("{ zz }"), schema.clone()], &ctx())
            .unwrap_err()
            .0;
        assert_eq!(
            err,
            "Cannot query field \"zz\" on type \"Query\" in GraphQL string at location 1:3"
        );
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let deep = "{a".repeat(5000);
        assert!(parse_query(&[Value::str(&deep)], &ctx()).is_err());
        let deep_list = format!("{{ f(a: {}) }}", "[".repeat(5000));
        assert!(parse_query(&[Value::str(&deep_list)], &ctx()).is_err());
        for text in [
            "\"\\u{110000}\"",
            "\"\\uD800\"",
            "\u{feff}{ a }",
            "{ a(b: \"\\x\") }",
            "\"\"\"",
            "{ a(b: -) }",
            "\u{0}",
        ] {
            let _ = parse_query(&[Value::str(text)], &ctx());
            let _ = parse_schema(&[Value::str(text)], &ctx());
        }
    }
}
