//! strings.render_template: the parts of Go's text/template that policies use — actions,
//! fields, variables, pipelines, `if`/`else if`/`range`/`with`/`else`/`end`, comments, trim
//! markers, and the built-in functions `and or not len index eq ne lt le gt ge print printf
//! println`. Values reach the template as OPA hands them over: JSON, with numbers as Go's
//! `json.Number` (a string type, hence `%!d(json.Number=5)` and `eq .n "5"`).

use std::collections::BTreeMap;

use super::gofmt::{self, Arg};
use super::{ok, operand, str_operand, type_err};
use crate::builtins::{BuiltinError, BuiltinResult, Context};
use crate::value::Value;

#[derive(Debug, Clone, PartialEq)]
enum TV {
    /// Go's invalid `reflect.Value`: a missing map key; prints as `<no value>`.
    Missing,
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A JSON number, which Go keeps as its text.
    Num(String),
    List(Vec<TV>),
    Map(BTreeMap<String, TV>),
}

fn from_value(v: &Value) -> TV {
    match v {
        Value::Null => TV::Nil,
        Value::Bool(b) => TV::Bool(*b),
        Value::Number(n) => TV::Num(n.to_string()),
        Value::String(s) => TV::Str(s.clone()),
        Value::Array(a) => TV::List(a.iter().map(from_value).collect()),
        Value::Set(s) => TV::List(s.iter().map(from_value).collect()),
        Value::Object(o) => TV::Map(
            o.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        other => other.to_json_string(),
                    };
                    (key, from_value(v))
                })
                .collect(),
        ),
    }
}

/// `fmt.Sprint` of one value.
fn sprint(v: &TV) -> String {
    match v {
        TV::Missing => "<no value>".into(),
        TV::Nil => "<nil>".into(),
        TV::Bool(b) => b.to_string(),
        TV::Int(i) => i.to_string(),
        TV::Float(f) => gofmt::format_float(*f, 'g', -1),
        TV::Str(s) | TV::Num(s) => s.clone(),
        TV::List(items) => format!(
            "[{}]",
            items.iter().map(sprint).collect::<Vec<_>>().join(" ")
        ),
        TV::Map(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", sprint(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn is_string_kind(v: &TV) -> bool {
    matches!(v, TV::Str(_) | TV::Num(_))
}

fn to_arg(v: &TV) -> Arg {
    match v {
        TV::Missing | TV::Nil => Arg::Nil,
        TV::Bool(b) => Arg::Bool(*b),
        TV::Int(i) => Arg::Int(*i),
        TV::Float(f) => Arg::Float(*f),
        TV::Str(s) => Arg::Str(s.clone(), "string"),
        TV::Num(s) => Arg::Str(s.clone(), "json.Number"),
        TV::List(_) => Arg::Opaque(sprint(v), "[]interface {}"),
        TV::Map(_) => Arg::Opaque(sprint(v), "map[string]interface {}"),
    }
}

fn truth(v: &TV) -> bool {
    match v {
        TV::Missing | TV::Nil => false,
        TV::Bool(b) => *b,
        TV::Int(i) => *i != 0,
        TV::Float(f) => *f != 0.0,
        TV::Str(s) | TV::Num(s) => !s.is_empty(),
        TV::List(l) => !l.is_empty(),
        TV::Map(m) => !m.is_empty(),
    }
}

#[derive(Debug, Clone)]
enum Operand {
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Lit(TV),
    Func(String),
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone)]
struct Pipe {
    decl: Vec<String>,
    cmds: Vec<Vec<Operand>>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

fn err<T>(msg: impl Into<String>) -> Result<T, BuiltinError> {
    Err(BuiltinError(format!("template: {}", msg.into())))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A `.a.b` chain, and whether it directly follows the previous token (`$x.a`, `(p).a`).
    Field(Vec<String>, bool),
    Var(String),
    Ident(String),
    Lit(TV),
    Dot,
    Pipe,
    Open,
    Close,
    Declare,
    Assign,
    Comma,
}

fn unquote(body: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Option<char> {
            let s: String = chars.take(n).collect();
            char::from_u32(u32::from_str_radix(&s, 16).ok()?)
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\\' | '"' | '\'' => out.push(e),
            'x' => out.push(hex(&mut chars, 2)?),
            'u' => out.push(hex(&mut chars, 4)?),
            'U' => out.push(hex(&mut chars, 8)?),
            _ => return None,
        }
    }
    Some(out)
}

fn number_literal(text: &str) -> Option<TV> {
    let t = text.replace('_', "");
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b.to_owned()),
        None => (false, t.strip_prefix('+').unwrap_or(&t).to_owned()),
    };
    let radix = [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ]
    .iter()
    .find_map(|(p, r)| body.strip_prefix(p).map(|d| (d.to_owned(), *r)));
    if let Some((digits, r)) = radix {
        let v = i64::from_str_radix(&digits, r).ok()?;
        return Some(TV::Int(if neg { -v } else { v }));
    }
    if body.bytes().all(|b| b.is_ascii_digit()) && !body.is_empty() {
        let v: i64 = body.parse().ok()?;
        return Some(TV::Int(if neg { -v } else { v }));
    }
    let f: f64 = body.parse().ok()?;
    f.is_finite().then_some(TV::Float(if neg { -f } else { f }))
}

fn lex(action: &str) -> Result<Vec<Tok>, BuiltinError> {
    let chars: Vec<char> = action.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    while let Some(&c) = chars.get(i) {
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            ')' => {
                toks.push(Tok::Close);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            '"' | '`' | '\'' => {
                let mut j = i + 1;
                while let Some(&d) = chars.get(j) {
                    if d == c {
                        break;
                    }
                    if d == '\\' && c != '`' {
                        j += 1;
                    }
                    j += 1;
                }
                if chars.get(j) != Some(&c) {
                    return err("unterminated quoted string");
                }
                let body: String = chars.get(i + 1..j).unwrap_or_default().iter().collect();
                i = j + 1;
                match c {
                    '`' => toks.push(Tok::Lit(TV::Str(body))),
                    '"' => toks
                        .push(Tok::Lit(TV::Str(unquote(&body).ok_or_else(|| {
                            BuiltinError("template: bad string".into())
                        })?))),
                    _ => {
                        let s = unquote(&body).ok_or_else(|| {
                            BuiltinError("template: bad character constant".into())
                        })?;
                        let mut it = s.chars();
                        let (Some(ch), None) = (it.next(), it.next()) else {
                            return err("bad character constant");
                        };
                        toks.push(Tok::Lit(TV::Int(i64::from(u32::from(ch)))));
                    }
                }
            }
            '.' if chars
                .get(i + 1)
                .is_some_and(|&d| word_char(d) && !d.is_ascii_digit()) =>
            {
                let attached = i > 0
                    && chars
                        .get(i - 1)
                        .is_some_and(|&p| !p.is_whitespace() && p != '(' && p != '|');
                let mut chain = Vec::new();
                while chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(|&d| word_char(d))
                {
                    let mut j = i + 1;
                    while chars.get(j).is_some_and(|&d| word_char(d)) {
                        j += 1;
                    }
                    chain.push(chars.get(i + 1..j).unwrap_or_default().iter().collect());
                    i = j;
                }
                toks.push(Tok::Field(chain, attached));
            }
            '.' if !chars.get(i + 1).is_some_and(char::is_ascii_digit) => {
                toks.push(Tok::Dot);
                i += 1;
            }
            '$' => {
                let mut j = i + 1;
                while chars.get(j).is_some_and(|&d| word_char(d)) {
                    j += 1;
                }
                toks.push(Tok::Var(
                    chars.get(i..j).unwrap_or_default().iter().collect(),
                ));
                i = j;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let mut j = i + 1;
                while chars.get(j).is_some_and(|&d| {
                    d.is_ascii_alphanumeric()
                        || d == '.'
                        || d == '_'
                        || ((d == '-' || d == '+')
                            && matches!(chars.get(j - 1), Some('e' | 'E' | 'p' | 'P')))
                }) {
                    j += 1;
                }
                let text: String = chars.get(i..j).unwrap_or_default().iter().collect();
                toks.push(Tok::Lit(number_literal(&text).ok_or_else(|| {
                    BuiltinError(format!("template: bad number syntax: {text:?}"))
                })?));
                i = j;
            }
            c if word_char(c) => {
                let mut j = i;
                while chars.get(j).is_some_and(|&d| word_char(d)) {
                    j += 1;
                }
                let w: String = chars.get(i..j).unwrap_or_default().iter().collect();
                toks.push(match w.as_str() {
                    "true" => Tok::Lit(TV::Bool(true)),
                    "false" => Tok::Lit(TV::Bool(false)),
                    "nil" => Tok::Lit(TV::Nil),
                    _ => Tok::Ident(w),
                });
                i = j;
            }
            other => return err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(toks)
}

struct PipeParser {
    toks: Vec<Tok>,
    i: usize,
    depth: usize,
}

impl PipeParser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    /// A field chain glued to the operand just parsed.
    fn fields(&mut self) -> Vec<String> {
        if let Some(Tok::Field(f, true)) = self.peek() {
            let f = f.clone();
            self.i += 1;
            return f;
        }
        Vec::new()
    }

    fn pipe(&mut self, allow_decl: bool) -> Result<Pipe, BuiltinError> {
        let mut decl = Vec::new();
        if allow_decl {
            let save = self.i;
            let mut names = Vec::new();
            while let Some(Tok::Var(v)) = self.peek() {
                names.push(v.clone());
                self.i += 1;
                if self.peek() == Some(&Tok::Comma) {
                    self.i += 1;
                } else {
                    break;
                }
            }
            if !names.is_empty() && matches!(self.peek(), Some(Tok::Declare | Tok::Assign)) {
                self.i += 1;
                decl = names;
            } else {
                self.i = save;
            }
        }
        let mut cmds = Vec::new();
        loop {
            let mut args = Vec::new();
            while let Some(t) = self.peek().cloned() {
                match t {
                    Tok::Pipe | Tok::Close => break,
                    Tok::Open => {
                        self.i += 1;
                        self.depth += 1;
                        if self.depth > MAX_NESTING {
                            return err("parentheses nested too deeply");
                        }
                        let inner = self.pipe(false)?;
                        self.depth -= 1;
                        if self.peek() != Some(&Tok::Close) {
                            return err("unclosed left paren");
                        }
                        self.i += 1;
                        let f = self.fields();
                        args.push(Operand::Sub(Box::new(inner), f));
                    }
                    Tok::Dot => {
                        self.i += 1;
                        args.push(Operand::Dot(Vec::new()));
                    }
                    Tok::Field(f, _) => {
                        self.i += 1;
                        args.push(Operand::Dot(f));
                    }
                    Tok::Var(v) => {
                        self.i += 1;
                        let f = self.fields();
                        args.push(Operand::Var(v, f));
                    }
                    Tok::Lit(v) => {
                        self.i += 1;
                        args.push(Operand::Lit(v));
                    }
                    Tok::Ident(name) => {
                        self.i += 1;
                        args.push(Operand::Func(name));
                    }
                    Tok::Declare | Tok::Assign | Tok::Comma => {
                        return err("unexpected token in command")
                    }
                }
            }
            if args.is_empty() {
                return err("missing value for command");
            }
            cmds.push(args);
            if self.peek() == Some(&Tok::Pipe) {
                self.i += 1;
                continue;
            }
            return Ok(Pipe { decl, cmds });
        }
    }
}

fn parse_pipe(action: &str, allow_decl: bool) -> Result<Pipe, BuiltinError> {
    let mut p = PipeParser {
        toks: lex(action)?,
        i: 0,
        depth: 0,
    };
    let pipe = p.pipe(allow_decl)?;
    if p.i != p.toks.len() {
        return err("unexpected token in operand");
    }
    Ok(pipe)
}

/// One `{{...}}` (trim markers already handled) or a run of text.
enum Piece {
    Text(String),
    Action(String),
}

fn split_pieces(src: &str) -> Result<Vec<Piece>, BuiltinError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = rest.get(..open).unwrap_or_default().to_owned();
        let mut body = rest.get(open + 2..).unwrap_or_default();
        if trim_next {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']).to_owned();
        }
        if let Some(b) = body
            .strip_prefix("- ")
            .or_else(|| body.strip_prefix("-\t"))
            .or_else(|| body.strip_prefix("-\n"))
            .or_else(|| body.strip_prefix("-\r"))
        {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']).to_owned();
            body = b;
        }
        pieces.push(Piece::Text(text));
        let close = if body.trim_start().starts_with("/*") {
            body.find("*/")
                .and_then(|c| body.get(c..).and_then(|r| r.find("}}")).map(|d| c + d))
        } else {
            find_close(body)
        };
        let Some(close) = close else {
            return err("unclosed action");
        };
        let mut inner = body.get(..close).unwrap_or_default();
        trim_next = false;
        for marker in [" -", "\t-", "\n-", "\r-"] {
            if let Some(b) = inner.strip_suffix(marker) {
                inner = b;
                trim_next = true;
                break;
            }
        }
        let t = inner.trim();
        if !(t.starts_with("/*") && t.ends_with("*/")) {
            pieces.push(Piece::Action(inner.to_owned()));
        }
        rest = body.get(close + 2..).unwrap_or_default();
    }
    let mut text = rest.to_owned();
    if trim_next {
        text = text.trim_start_matches([' ', '\t', '\r', '\n']).to_owned();
    }
    pieces.push(Piece::Text(text));
    Ok(pieces)
}

/// The `}}` closing an action, skipping any inside quoted strings.
fn find_close(body: &str) -> Option<usize> {
    let b = body.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while let Some(&c) = b.get(i) {
        match quote {
            Some(q) => {
                if c == b'\\' && q != b'`' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => {
                if c == b'"' || c == b'`' || c == b'\'' {
                    quote = Some(c);
                } else if c == b'}' && b.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

/// What stopped a list of nodes.
enum Stop {
    Eof,
    End,
    Else(Option<String>),
}

/// Control structures nest by recursion here and in execution; deeper templates are refused.
const MAX_NESTING: usize = 200;

fn parse_list(
    pieces: &[Piece],
    i: &mut usize,
    depth: usize,
) -> Result<(Vec<Node>, Stop), BuiltinError> {
    if depth > MAX_NESTING {
        return err("control structures nested too deeply");
    }
    let mut nodes = Vec::new();
    while let Some(p) = pieces.get(*i) {
        *i += 1;
        match p {
            Piece::Text(t) => {
                if !t.is_empty() {
                    nodes.push(Node::Text(t.clone()));
                }
            }
            Piece::Action(a) => {
                let t = a.trim();
                let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
                match word {
                    "end" => return Ok((nodes, Stop::End)),
                    "else" => {
                        let r = rest.trim();
                        return Ok((nodes, Stop::Else((!r.is_empty()).then(|| r.to_owned()))));
                    }
                    "if" | "range" | "with" => {
                        nodes.push(parse_control(word, rest, pieces, i, depth + 1)?)
                    }
                    "define" | "template" | "block" | "break" | "continue" => {
                        return err(format!("{word} is not supported"))
                    }
                    _ => nodes.push(Node::Action(parse_pipe(t, true)?)),
                }
            }
        }
    }
    Ok((nodes, Stop::Eof))
}

fn parse_control(
    word: &str,
    rest: &str,
    pieces: &[Piece],
    i: &mut usize,
    depth: usize,
) -> Result<Node, BuiltinError> {
    let pipe = parse_pipe(rest, true)?;
    let (then, end) = parse_list(pieces, i, depth)?;
    let els = match end {
        Stop::Eof => return err(format!("unexpected EOF in {word}")),
        Stop::End => Vec::new(),
        Stop::Else(None) => {
            let (els, end) = parse_list(pieces, i, depth)?;
            if !matches!(end, Stop::End) {
                return err("expected end");
            }
            els
        }
        // `else if ...` / `else with ...` nest a new control that shares this `end`.
        Stop::Else(Some(chain)) => {
            let (w, r) = chain
                .split_once(char::is_whitespace)
                .unwrap_or((&chain, ""));
            if w != word || word == "range" {
                return err("unexpected else clause");
            }
            vec![parse_control(w, r, pieces, i, depth + 1)?]
        }
    };
    Ok(match word {
        "if" => Node::If(pipe, then, els),
        "range" => Node::Range(pipe, then, els),
        _ => Node::With(pipe, then, els),
    })
}

const MAX_OUTPUT: usize = 64 << 20;

struct Exec {
    vars: Vec<(String, TV)>,
    out: String,
    steps: usize,
}

impl Exec {
    fn var(&self, name: &str) -> Result<TV, BuiltinError> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => err(format!("undefined variable: {name}")),
        }
    }

    fn set_var(&mut self, name: &str, v: TV) {
        self.vars.push((name.to_owned(), v));
    }

    fn fields(&self, mut v: TV, fields: &[String]) -> Result<TV, BuiltinError> {
        for f in fields {
            v = match v {
                TV::Map(mut m) => m.remove(f).unwrap_or(TV::Missing),
                TV::Missing | TV::Nil => {
                    return err(format!("nil pointer evaluating interface {{}}.{f}"))
                }
                _ => return err(format!("can't evaluate field {f} in type interface {{}}")),
            };
        }
        Ok(v)
    }

    fn operand(&mut self, op: &Operand, dot: &TV) -> Result<TV, BuiltinError> {
        match op {
            Operand::Dot(f) => self.fields(dot.clone(), f),
            Operand::Var(n, f) => {
                let v = self.var(n)?;
                self.fields(v, f)
            }
            Operand::Lit(v) => Ok(v.clone()),
            Operand::Sub(p, f) => {
                let v = self.pipe(p, dot)?;
                self.fields(v, f)
            }
            Operand::Func(name) => self.call(name, &[], None, dot),
        }
    }

    fn pipe(&mut self, p: &Pipe, dot: &TV) -> Result<TV, BuiltinError> {
        let mut prev: Option<TV> = None;
        for cmd in &p.cmds {
            prev = Some(self.command(cmd, prev, dot)?);
        }
        let v = prev.unwrap_or(TV::Missing);
        for name in &p.decl {
            self.set_var(name, v.clone());
        }
        Ok(v)
    }

    fn command(&mut self, cmd: &[Operand], prev: Option<TV>, dot: &TV) -> Result<TV, BuiltinError> {
        self.steps += 1;
        if self.steps > 1_000_000 {
            return err("template too expensive");
        }
        match cmd {
            [Operand::Func(name), args @ ..] => self.call(name, args, prev, dot),
            [single] => {
                if prev.is_some() {
                    return err("can't give argument to non-function");
                }
                self.operand(single, dot)
            }
            _ => err("can't give argument to non-function"),
        }
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Operand],
        prev: Option<TV>,
        dot: &TV,
    ) -> Result<TV, BuiltinError> {
        // and/or evaluate lazily and return the deciding operand, as Go's do.
        if name == "and" || name == "or" {
            let mut last = TV::Missing;
            let n = args.len() + usize::from(prev.is_some());
            if n == 0 {
                return err(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                ));
            }
            for a in args {
                last = self.operand(a, dot)?;
                if truth(&last) != (name == "and") {
                    return Ok(last);
                }
            }
            if let Some(p) = prev {
                last = p;
            }
            return Ok(last);
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.operand(a, dot)?);
        }
        if let Some(p) = prev {
            vals.push(p);
        }
        let want = |n: usize| -> Result<(), BuiltinError> {
            if vals.len() == n {
                Ok(())
            } else {
                err(format!(
                    "wrong number of args for {name}: want {n} got {}",
                    vals.len()
                ))
            }
        };
        match name {
            "not" => {
                want(1)?;
                Ok(TV::Bool(!vals.first().is_some_and(truth)))
            }
            "len" => {
                want(1)?;
                let n = match vals.first() {
                    Some(TV::Str(s) | TV::Num(s)) => s.len(),
                    Some(TV::List(l)) => l.len(),
                    Some(TV::Map(m)) => m.len(),
                    _ => return err("error calling len: len of nil pointer"),
                };
                Ok(TV::Int(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            "index" => {
                let Some((first, keys)) = vals.split_first() else {
                    return err("wrong number of args for index");
                };
                let mut v = first.clone();
                for k in keys {
                    v = match (v, k) {
                        (TV::List(l), TV::Int(i)) => match usize::try_from(*i)
                            .ok()
                            .and_then(|i| l.get(i))
                        {
                            Some(x) => x.clone(),
                            None => {
                                return err(format!("error calling index: index out of range: {i}"))
                            }
                        },
                        (TV::Map(m), TV::Str(s)) => m.get(s).cloned().unwrap_or(TV::Missing),
                        (TV::Missing | TV::Nil, _) => {
                            return err("error calling index: index of untyped nil")
                        }
                        _ => return err("error calling index: cannot index"),
                    };
                }
                Ok(v)
            }
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => self.compare(name, &vals),
            "print" => {
                let mut s = String::new();
                for (i, v) in vals.iter().enumerate() {
                    if i > 0
                        && !is_string_kind(v)
                        && vals.get(i - 1).is_some_and(|p| !is_string_kind(p))
                    {
                        s.push(' ');
                    }
                    s.push_str(&sprint(v));
                }
                Ok(TV::Str(s))
            }
            "println" => Ok(TV::Str(format!(
                "{}\n",
                vals.iter().map(sprint).collect::<Vec<_>>().join(" ")
            ))),
            "printf" => {
                let Some((TV::Str(f), rest)) = vals.split_first() else {
                    return err("wrong type for value; expected string");
                };
                let go_args: Vec<Arg> = rest.iter().map(to_arg).collect();
                Ok(TV::Str(gofmt::sprintf(f, &go_args)))
            }
            _ => err(format!("function {name:?} not defined")),
        }
    }

    fn compare(&self, name: &str, vals: &[TV]) -> Result<TV, BuiltinError> {
        use std::cmp::Ordering;
        let ord = |a: &TV, b: &TV| -> Result<Option<Ordering>, BuiltinError> {
            Ok(match (a, b) {
                (TV::Str(x) | TV::Num(x), TV::Str(y) | TV::Num(y)) => Some(x.cmp(y)),
                (TV::Int(x), TV::Int(y)) => Some(x.cmp(y)),
                (TV::Float(x), TV::Float(y)) => x.partial_cmp(y),
                (TV::Bool(x), TV::Bool(y)) => Some(x.cmp(y)),
                _ => {
                    return err(format!(
                        "error calling {name}: incompatible types for comparison"
                    ))
                }
            })
        };
        let (Some(first), rest) = (vals.first(), vals.get(1..).unwrap_or_default()) else {
            return err(format!("wrong number of args for {name}"));
        };
        if rest.is_empty() {
            return err(format!("wrong number of args for {name}: want 2 got 1"));
        }
        if name == "eq" {
            for other in rest {
                if ord(first, other)? == Some(Ordering::Equal) {
                    return Ok(TV::Bool(true));
                }
            }
            return Ok(TV::Bool(false));
        }
        if rest.len() != 1 || matches!(first, TV::Bool(_)) && name != "ne" {
            return err(format!("error calling {name}: invalid type for comparison"));
        }
        let o = ord(first, rest.first().unwrap_or(&TV::Missing))?;
        let r = match name {
            "ne" => o != Some(Ordering::Equal),
            "lt" => o == Some(Ordering::Less),
            "le" => matches!(o, Some(Ordering::Less | Ordering::Equal)),
            "gt" => o == Some(Ordering::Greater),
            _ => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
        };
        Ok(TV::Bool(r))
    }

    fn nodes(&mut self, nodes: &[Node], dot: &TV) -> Result<(), BuiltinError> {
        for n in nodes {
            if self.out.len() > MAX_OUTPUT {
                return err("output too large");
            }
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        match v {
                            TV::Missing | TV::Nil => self.out.push_str("<no value>"),
                            other => self.out.push_str(&sprint(&other)),
                        }
                    }
                }
                Node::If(p, then, els) | Node::With(p, then, els) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let r = if truth(&v) {
                        let d = if matches!(n, Node::With(..)) {
                            v
                        } else {
                            dot.clone()
                        };
                        self.nodes(then, &d)
                    } else {
                        self.nodes(els, dot)
                    };
                    self.vars.truncate(mark);
                    r?;
                }
                Node::Range(p, body, els) => {
                    let mark = self.vars.len();
                    let decl = p.decl.clone();
                    let bare = Pipe {
                        decl: Vec::new(),
                        cmds: p.cmds.clone(),
                    };
                    let v = self.pipe(&bare, dot)?;
                    let items: Vec<(TV, TV)> = match v {
                        TV::List(l) => l
                            .into_iter()
                            .enumerate()
                            .map(|(i, x)| (TV::Int(i64::try_from(i).unwrap_or(0)), x))
                            .collect(),
                        TV::Map(m) => m.into_iter().map(|(k, x)| (TV::Str(k), x)).collect(),
                        TV::Missing | TV::Nil => Vec::new(),
                        TV::Int(n) if n > 100_000 => return err("range over too large an integer"),
                        TV::Int(n) => (0..n.max(0)).map(|i| (TV::Int(i), TV::Int(i))).collect(),
                        _ => return err("range can't iterate over value"),
                    };
                    if items.is_empty() {
                        self.nodes(els, dot)?;
                    }
                    for (k, x) in items {
                        let inner = self.vars.len();
                        match decl.as_slice() {
                            [] => {}
                            [one] => self.set_var(one, x.clone()),
                            [a, b, ..] => {
                                self.set_var(a, k);
                                self.set_var(b, x.clone());
                            }
                        }
                        self.nodes(body, &x)?;
                        self.vars.truncate(inner);
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }
}

pub(super) fn render_template(args: &[Value], _: &Context) -> BuiltinResult {
    let src = str_operand(args, 1)?;
    let vars = match operand(args, 2)? {
        v @ Value::Object(_) => from_value(v),
        other => return Err(type_err(2, other, &["object"])),
    };
    let pieces = split_pieces(src)?;
    let mut i = 0;
    let (nodes, end) = parse_list(&pieces, &mut i, 0)?;
    if !matches!(end, Stop::Eof) {
        return err("unexpected {{end}} or {{else}}");
    }
    let mut exec = Exec {
        vars: vec![("$".to_owned(), vars.clone())],
        out: String::new(),
        steps: 0,
    };
    exec.nodes(&nodes, &vars)?;
    ok(Value::String(exec.out.replace("<no value>", "<undefined>")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn render(tpl: &str, vars: &str) -> Result<String, String> {
        let args = [Value::str(tpl), Value::parse_rego(vars).unwrap()];
        match render_template(&args, &Context { now_ns: 0 }) {
            Ok(Some(Value::String(s))) => Ok(s),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn conformance_cases() {
        assert_eq!(
            render("{{.test}}", r#"{"test": "hello world"}"#).unwrap(),
            "hello world"
        );
        assert_eq!(render("{{.test}}", r#"{"test": 2023}"#).unwrap(), "2023");
        assert_eq!(
            render(
                "{{range $i, $name := .hellonames}}{{if $i}},{{end}}hello {{$name}}{{end}}",
                r#"{"hellonames": ["rohan", "john doe"]}"#
            )
            .unwrap(),
            "hello rohan,hello john doe"
        );
        assert_eq!(
            render("{{.testvarnotprovided}}", r#"{"test": "x"}"#).unwrap(),
            "<undefined>"
        );
        assert_eq!(
            render("test {{.foo}} {{.bar}} {{.baz}}", r#"{"baz": 1}"#).unwrap(),
            "test <undefined> <undefined> 1"
        );
    }

    #[test]
    fn matches_opa_eval() {
        assert_eq!(
            render(
                r#"{{.x}}|{{.l}}|{{.m}}|{{.n}}|{{.s}}|{{printf "%d|%v|%T" .x .x .x}}|{{len .l}}|{{index .l 1}}|{{if eq .s "a"}}yes{{end}}|{{.m.k}}|{{.z}}|{{.e}}"#,
                r#"{"x": 1.5, "l": [1, "b", true], "m": {"k": [1], "a": null}, "n": null, "s": "a", "e": {}}"#
            )
            .unwrap(),
            "1.5|[1 b true]|map[a:<nil> k:[1]]|<undefined>|a|%!d(json.Number=1.5)|1.5|json.Number|3|b|yes|[1]|<undefined>|map[]"
        );
        assert_eq!(
            render(
                r#"{{ .x -}}  {{/* c */}} |{{- range $k, $v := .m}}{{$k}}={{$v}};{{else}}none{{end}}|{{with .q}}q{{else}}noq{{end}}|{{range .l}}<{{.}}>{{end}}|{{$a := "s"}}{{$a}}|{{print 1 2 "x" "y" 3}}|{{println "a"}}|{{and 1 0}}|{{or "" "z"}}|{{not true}}|{{ne "a" "b"}}|{{lt 1 2}}|{{"q\t"}}|{{.x | printf "%s-%s" "k"}}"#,
                r#"{"x": 2023, "m": {"b": 2, "a": 1}, "l": [1, [2, 3], {"a": "b"}]}"#
            )
            .unwrap(),
            "2023 |a=1;b=2;|noq|<1><[2 3]><map[a:b]>|s|1 2xy3|a\n|0|z|false|true|true|q\t|k-2023"
        );
        assert_eq!(
            render(
                "{{if .a}}A{{else if .b}}B{{else}}C{{end}}",
                r#"{"b": true}"#
            )
            .unwrap(),
            "B"
        );
        assert!(render("{{.x.y}}", r#"{"x": 2023}"#).is_err());
        assert!(render("{{if eq .x 5}}y{{end}}", r#"{"x": 5}"#).is_err());
        assert!(render("{{if", "{}").is_err());
        assert!(render("{{end}}", "{}").is_err());
        assert!(render("{{.x}}", "[]").is_err());
        assert!(render(&"{{if 1}}".repeat(10_000), "{}").is_err());
        assert!(render(
            &format!("{{{{{}1{}}}}}", "(".repeat(10_000), ")".repeat(10_000)),
            "{}"
        )
        .is_err());
        assert!(render("{{range 100000000000}}x{{end}}", "{}").is_err());
    }
}
