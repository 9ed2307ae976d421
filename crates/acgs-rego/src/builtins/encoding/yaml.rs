//! yaml.marshal, yaml.unmarshal, yaml.is_valid with OPA's semantics: go-yaml v3's YAML 1.2
//! core-schema resolution on the way in (plain `yes`/`on` stay strings), the JSON data model
//! on the way out, and go-yaml v3's block style at two-space indentation for marshal.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{
    arg, go_fmt_g, go_json_float, number_text, string_operand, to_json_value, BuiltinError,
    BuiltinResult, Context,
};
use crate::value::{Number, Value};

/// Nesting beyond this is rejected rather than risking the host's stack.
const MAX_DEPTH: usize = 256;

// ---------------------------------------------------------------------------------------------
// Scalar resolution (go-yaml v3's `resolve`)

enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Timestamp,
    Merge,
    Str,
}

fn parse_int_base0(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    let (radix, digits) =
        if let Some(d) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, d)
        } else if let Some(d) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, d)
        } else if let Some(d) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, d)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, body.get(1..)?)
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = u128::from_str_radix(digits, radix).ok()?;
    let v = i128::try_from(v).ok()?;
    Some(if neg { -v } else { v })
}

fn int_result(v: i128) -> Option<Resolved> {
    if let Ok(i) = i64::try_from(v) {
        Some(Resolved::Int(i))
    } else {
        u64::try_from(v).ok().map(Resolved::Uint)
    }
}

fn is_yaml_style_float(s: &str) -> bool {
    let b = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mant, exp) = match b.find(['e', 'E']) {
        Some(i) => (
            b.get(..i).unwrap_or_default(),
            Some(b.get(i + 1..).unwrap_or_default()),
        ),
        None => (b, None),
    };
    let mant_ok = if let Some(frac) = mant.strip_prefix('.') {
        !frac.is_empty() && frac.bytes().all(|c| c.is_ascii_digit())
    } else {
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        !int.is_empty()
            && int.bytes().all(|c| c.is_ascii_digit())
            && frac.bytes().all(|c| c.is_ascii_digit())
    };
    let exp_ok = exp.is_none_or(|e| {
        let d = e.strip_prefix(['-', '+']).unwrap_or(e);
        !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
    });
    mant_ok && exp_ok
}

/// Go's `strconv.ParseFloat` for the spellings YAML can reach here.
fn go_parse_float(s: &str) -> Option<f64> {
    if s.contains('_') || s.contains(['x', 'X', 'p', 'P']) {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if matches!(body, "inf" | "infinity" | "nan") {
        return None;
    }
    // Go reports out-of-range values as errors, so YAML keeps them as strings.
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn is_timestamp(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits != 4 || s.as_bytes().get(4) != Some(&b'-') {
        return false;
    }
    [
        "2006-1-2T15:4:5.999999999Z07:00",
        "2006-1-2t15:4:5.999999999Z07:00",
        "2006-1-2 15:4:5.999999999",
        "2006-1-2",
    ]
    .iter()
    .any(|layout| crate::builtins::time::parses_as(layout, s))
}

/// Resolves an untagged plain scalar.
fn resolve_plain(s: &str) -> Resolved {
    match s {
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        "<<" => return Resolved::Merge,
        _ => {}
    }
    match s.as_bytes().first() {
        Some(b'.') => go_parse_float(s).map_or(Resolved::Str, Resolved::Float),
        Some(b'0'..=b'9' | b'+' | b'-') => {
            if is_timestamp(s) {
                return Resolved::Timestamp;
            }
            let plain = s.replace('_', "");
            if let Some(r) = parse_int_base0(&plain).and_then(int_result) {
                return r;
            }
            if is_yaml_style_float(&plain) {
                if let Some(f) = go_parse_float(&plain) {
                    return Resolved::Float(f);
                }
            }
            Resolved::Str
        }
        _ => Resolved::Str,
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

#[derive(Debug)]
enum Node {
    Scalar {
        value: String,
        plain: bool,
        tag: Option<String>,
    },
    Seq(Vec<Rc<Node>>),
    Map(Vec<(Rc<Node>, Rc<Node>)>),
}

enum Building {
    Seq(usize, Vec<Rc<Node>>),
    Map(usize, Vec<Rc<Node>>),
}

#[derive(Default)]
struct Loader {
    stack: Vec<Building>,
    anchors: HashMap<usize, Rc<Node>>,
    first_doc: Option<Option<Rc<Node>>>,
    docs: usize,
    error: Option<String>,
}

fn short_tag(tag: &Tag) -> String {
    if tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:" {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

impl Loader {
    fn push_node(&mut self, anchor: usize, node: Rc<Node>) {
        if anchor != 0 {
            self.anchors.insert(anchor, Rc::clone(&node));
        }
        match self.stack.last_mut() {
            Some(Building::Seq(_, items) | Building::Map(_, items)) => items.push(node),
            None => {
                if self.first_doc.is_none() {
                    self.first_doc = Some(Some(node));
                }
            }
        }
    }
}

impl MarkedEventReceiver for Loader {
    fn on_event(&mut self, ev: Event, _mark: Marker) {
        match ev {
            Event::DocumentStart => self.docs += 1,
            Event::DocumentEnd if self.first_doc.is_none() && self.docs > 0 => {
                self.first_doc = Some(None);
            }
            Event::Scalar(value, style, anchor, tag) => {
                let node = Node::Scalar {
                    value,
                    plain: style == TScalarStyle::Plain,
                    tag: tag.as_ref().map(short_tag),
                };
                self.push_node(anchor, Rc::new(node));
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(n) => {
                    let n = Rc::clone(n);
                    self.push_node(0, n);
                }
                None => {
                    self.error
                        .get_or_insert_with(|| "yaml: unknown anchor referenced".to_owned());
                }
            },
            Event::SequenceStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.error
                        .get_or_insert_with(|| "yaml: exceeded max depth".to_owned());
                }
                self.stack.push(Building::Seq(anchor, Vec::new()));
            }
            Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.error
                        .get_or_insert_with(|| "yaml: exceeded max depth".to_owned());
                }
                self.stack.push(Building::Map(anchor, Vec::new()));
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Building::Seq(anchor, items)) => {
                    self.push_node(anchor, Rc::new(Node::Seq(items)))
                }
                Some(Building::Map(anchor, items)) => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    self.push_node(anchor, Rc::new(Node::Map(pairs)));
                }
                None => {}
            },
            _ => {}
        }
    }
}

fn load_first(text: &str) -> Result<Option<Rc<Node>>, String> {
    // go-yaml accepts only YAML 1.1 version directives.
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("%YAML") {
            if rest.split_whitespace().next() != Some("1.1") {
                return Err("yaml: found incompatible YAML document".to_owned());
            }
        }
    }
    let mut loader = Loader::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut loader, true)
        .map_err(|e| format!("yaml: {e}"))?;
    if let Some(e) = loader.error {
        return Err(e);
    }
    Ok(loader.first_doc.flatten())
}

/// Converts a loaded node to the JSON data model, as OPA's YAML-to-JSON step does.
struct Converter {
    /// Remaining node visits; aliases can make a small document expand enormously.
    budget: usize,
}

impl Converter {
    fn scalar(&self, value: &str, plain: bool, tag: Option<&str>) -> Result<Value, String> {
        let resolved = match tag {
            None if plain => resolve_plain(value),
            None => Resolved::Str,
            Some("!!str" | "!!timestamp") => Resolved::Str,
            Some("!!binary") => {
                let cleaned: String = value.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = decode_base64(&cleaned).ok_or_else(|| {
                    "yaml: !!binary value contains invalid base64 data".to_owned()
                })?;
                return Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            }
            Some(t @ ("!!null" | "!!bool" | "!!int" | "!!float")) => {
                let r = resolve_plain(value);
                let ok = matches!(
                    (t, &r),
                    ("!!null", Resolved::Null)
                        | ("!!bool", Resolved::Bool(_))
                        | ("!!int", Resolved::Int(_) | Resolved::Uint(_))
                        | (
                            "!!float",
                            Resolved::Float(_) | Resolved::Int(_) | Resolved::Uint(_)
                        )
                );
                if !ok {
                    let rtag = match r {
                        Resolved::Null => "!!null",
                        Resolved::Bool(_) => "!!bool",
                        Resolved::Int(_) | Resolved::Uint(_) => "!!int",
                        Resolved::Float(_) => "!!float",
                        Resolved::Timestamp => "!!timestamp",
                        Resolved::Merge => "!!merge",
                        Resolved::Str => "!!str",
                    };
                    return Err(format!("yaml: cannot decode {rtag} `{value}` as a {t}"));
                }
                match (t, r) {
                    ("!!float", Resolved::Int(i)) => {
                        #[allow(clippy::cast_precision_loss)] // Go converts the same way
                        let f = i as f64;
                        Resolved::Float(f)
                    }
                    (_, r) => r,
                }
            }
            Some(_) => Resolved::Str,
        };
        Ok(match resolved {
            Resolved::Null => Value::Null,
            Resolved::Bool(b) => Value::Bool(b),
            Resolved::Int(i) => Value::int(i),
            Resolved::Uint(u) => {
                Value::Number(Number::parse(&u.to_string()).unwrap_or(Number::Int(0)))
            }
            Resolved::Float(f) => {
                if !f.is_finite() {
                    let name = if f.is_nan() {
                        "NaN"
                    } else if f > 0.0 {
                        "+Inf"
                    } else {
                        "-Inf"
                    };
                    return Err(format!("json: unsupported value: {name}"));
                }
                Value::Number(Number::parse(&go_json_float(f)).unwrap_or(Number::Float(f)))
            }
            Resolved::Timestamp | Resolved::Merge | Resolved::Str => {
                Value::String(value.to_owned())
            }
        })
    }

    fn key(&mut self, node: &Node) -> Result<Value, String> {
        let Node::Scalar { value, plain, tag } = node else {
            return Err("yaml: invalid map key: non-scalar key".to_owned());
        };
        let key = match (tag, plain) {
            (None, true) => match resolve_plain(value) {
                Resolved::Null => {
                    return Err(format!(
                        "unsupported map key of type: <nil>, key: <nil>, value: {value}"
                    ))
                }
                Resolved::Bool(b) => b.to_string(),
                Resolved::Int(i) => i.to_string(),
                Resolved::Uint(u) => u.to_string(),
                Resolved::Float(f) => float32_key(f),
                _ => value.clone(),
            },
            _ => match self.scalar(value, *plain, tag.as_deref())? {
                Value::Null => return Err("unsupported map key of type: <nil>".to_owned()),
                Value::String(s) => s,
                Value::Number(n) => number_text(&n),
                other => other.to_json_string(),
            },
        };
        Ok(Value::String(key))
    }

    fn is_merge_key(node: &Node) -> bool {
        match node {
            Node::Scalar {
                value,
                plain: true,
                tag: None,
            } => value == "<<",
            Node::Scalar { tag: Some(t), .. } => t == "!!merge",
            _ => false,
        }
    }

    fn convert(&mut self, node: &Node, depth: usize) -> Result<Value, String> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| "yaml: document contains excessive aliasing".to_owned())?;
        if depth > MAX_DEPTH {
            return Err("yaml: exceeded max depth".to_owned());
        }
        match node {
            Node::Scalar { value, plain, tag } => self.scalar(value, *plain, tag.as_deref()),
            Node::Seq(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|n| self.convert(n, depth + 1))
                    .collect::<Result<_, _>>()?,
            )),
            Node::Map(pairs) => {
                let mut out = BTreeMap::new();
                let mut merges: Vec<&Rc<Node>> = Vec::new();
                for (k, v) in pairs {
                    if Self::is_merge_key(k) {
                        merges.push(v);
                        continue;
                    }
                    let key = self.key(k)?;
                    let val = self.convert(v, depth + 1)?;
                    out.insert(key, val);
                }
                // Explicit keys win over merged ones; earlier merge sources win over later.
                for m in merges {
                    let sources: Vec<&Rc<Node>> = match &**m {
                        Node::Map(_) => vec![m],
                        Node::Seq(items) => items.iter().collect(),
                        Node::Scalar { .. } => {
                            return Err(
                                "yaml: map merge requires map or sequence of maps as the value"
                                    .to_owned(),
                            )
                        }
                    };
                    for src in sources {
                        let Value::Object(merged) = self.convert(src, depth + 1)? else {
                            return Err(
                                "yaml: map merge requires map or sequence of maps as the value"
                                    .to_owned(),
                            );
                        };
                        for (k, v) in merged {
                            out.entry(k).or_insert(v);
                        }
                    }
                }
                Ok(Value::Object(out))
            }
        }
    }
}

/// go-yaml renders float map keys with 32-bit precision.
fn float32_key(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    #[allow(clippy::cast_possible_truncation)] // deliberate: Go formats these as float32
    let g = f as f32;
    // Shortest float32 digits, laid out the way Go's 'g' format does.
    let sci = format!("{g:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let mant = mant.to_owned();
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        format!("{g}")
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let s = s.trim_end_matches('=');
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

fn yaml_to_value(text: &str) -> Result<Value, String> {
    let Some(root) = load_first(text)? else {
        return Ok(Value::Null);
    };
    let mut conv = Converter {
        budget: text.len().saturating_mul(100).max(10_000),
    };
    conv.convert(&root, 0)
}

pub(super) fn unmarshal(args: &[Value], _: &Context) -> BuiltinResult {
    let s = string_operand(args, 1)?;
    yaml_to_value(s).map(Some).map_err(BuiltinError)
}

pub(super) fn is_valid(args: &[Value], _: &Context) -> BuiltinResult {
    let valid = match args.first() {
        Some(Value::String(s)) => yaml_to_value(s).is_ok(),
        _ => false,
    };
    Ok(Some(Value::Bool(valid)))
}

// ---------------------------------------------------------------------------------------------
// Emitting

/// A YAML value as go-yaml sees it after OPA's JSON round trip.
enum Y {
    Null,
    Bool(bool),
    Int(String),
    Float(f64),
    Str(String),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
}

fn to_y(v: &Value) -> Y {
    match v {
        Value::Null => Y::Null,
        Value::Bool(b) => Y::Bool(*b),
        Value::Number(n) => {
            // go-yaml re-reads the JSON number text: integers that fit 64 bits stay integers.
            let text = number_text(n);
            match resolve_plain(&text) {
                Resolved::Int(i) => Y::Int(i.to_string()),
                Resolved::Uint(u) => Y::Int(u.to_string()),
                _ => Y::Float(text.parse::<f64>().unwrap_or(n.as_f64())),
            }
        }
        Value::String(s) => Y::Str(fold_nel(s)),
        Value::Array(a) => Y::Seq(a.iter().map(to_y).collect()),
        Value::Set(s) => Y::Seq(s.iter().map(to_y).collect()),
        Value::Object(o) => {
            let mut entries: Vec<(String, Y)> = o
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().map_or_else(|| k.to_json_string(), str::to_owned),
                        to_y(v),
                    )
                })
                .collect();
            entries.sort_by(|a, b| natural_cmp(&a.0, &b.0));
            Y::Map(entries)
        }
    }
}

/// JSON leaves U+0085 unescaped, and go-yaml reads it back as a line break inside the quoted
/// scalar, where folding turns one break into a space and each further one into a newline.
fn fold_nel(s: &str) -> String {
    if !s.contains('\u{85}') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut run = 0usize;
    for c in s.chars() {
        if c == '\u{85}' {
            run += 1;
            continue;
        }
        if run > 0 {
            out.push_str(&if run == 1 {
                " ".to_owned()
            } else {
                "\n".repeat(run - 1)
            });
            run = 0;
        }
        out.push(c);
    }
    if run > 0 {
        out.push_str(&if run == 1 {
            " ".to_owned()
        } else {
            "\n".repeat(run - 1)
        });
    }
    out
}

/// go-yaml's map key order: letters before digits, digit runs compared numerically.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut digits = false;
    let n = ar.len().min(br.len());
    for i in 0..n {
        let (Some(&ca), Some(&cb)) = (ar.get(i), br.get(i)) else {
            break;
        };
        if ca == cb {
            digits = ca.is_numeric();
            continue;
        }
        let (al, bl) = (ca.is_alphabetic(), cb.is_alphabetic());
        if al && bl {
            return ca.cmp(&cb);
        }
        if al || bl {
            let a_first = if digits { al } else { bl };
            return if a_first {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ca == '0' || cb == '0' {
            let mut j = i;
            while j > 0 {
                j -= 1;
                match ar.get(j) {
                    Some(c) if c.is_numeric() => {
                        if *c != '0' {
                            an = 1;
                            bn = 1;
                            break;
                        }
                    }
                    _ => break,
                }
            }
        }
        let run = |s: &[char], n: &mut i64| -> usize {
            let mut k = i;
            while let Some(c) = s.get(k).filter(|c| c.is_ascii_digit()) {
                *n = n
                    .saturating_mul(10)
                    .saturating_add(i64::from(u32::from(*c) - u32::from('0')));
                k += 1;
            }
            k
        };
        let ai = run(&ar, &mut an);
        let bi = run(&br, &mut bn);
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ca.cmp(&cb);
    }
    ar.len().cmp(&br.len())
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

fn is_printable(c: char) -> bool {
    matches!(c as u32, 0x0A | 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD) && c != '\u{FEFF}'
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

fn is_base60_float(s: &str) -> bool {
    // [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?
    let b = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (main, frac) = b.split_once('.').unwrap_or((b, ""));
    if !frac.bytes().all(|c| c.is_ascii_digit() || c == b'_') {
        return false;
    }
    let mut parts = main.split(':');
    let head = parts.next().unwrap_or_default();
    if !head.as_bytes().first().is_some_and(u8::is_ascii_digit)
        || !head.bytes().all(|c| c.is_ascii_digit() || c == b'_')
    {
        return false;
    }
    let mut n = 0;
    for p in parts {
        n += 1;
        let ok = match p.as_bytes() {
            [d] => d.is_ascii_digit(),
            [a, d] => (b'0'..=b'5').contains(a) && d.is_ascii_digit(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    n > 0
}

/// The facts go-yaml's emitter derives from a scalar's text.
struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn analyze(value: &str) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = value.chars().collect();
    let mut block_indicators = value.starts_with("---") || value.starts_with("...");
    let (mut line_breaks, mut special, mut tabs) = (false, false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let mut preceded_by_ws = true;
    let last = chars.len().saturating_sub(1);
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_by_ws = next.is_none_or(|n| n == ' ' || n == '\t' || is_break(n));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => {
                    block_indicators = true;
                }
                '?' | ':' | '-' if followed_by_ws => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => block_indicators = true,
                '#' if preceded_by_ws => block_indicators = true,
                _ => {}
            }
        }
        if c == '\t' {
            tabs = true;
        } else if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= i == last;
            break_space |= prev_break;
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            line_breaks = true;
            leading_break |= i == 0;
            trailing_break |= i == last;
            space_break |= prev_space;
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_by_ws = c == ' ' || c == '\t' || is_break(c) || c == '\0';
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space || space_break || tabs || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

fn choose_style(s: &str, simple_key: bool) -> Style {
    let can_plain =
        matches!(resolve_plain(s), Resolved::Str) && !is_base60_float(s) && !is_old_bool(s);
    let requested = if s.contains('\n') {
        Style::Literal
    } else if can_plain {
        Style::Plain
    } else {
        Style::Double
    };
    let a = analyze(s);
    let mut style = requested;
    if simple_key && a.multiline {
        style = Style::Double;
    }
    if style == Style::Plain && (!a.block_plain_allowed || (s.is_empty() && simple_key)) {
        style = Style::Single;
    }
    if style == Style::Single && !a.single_quoted_allowed {
        style = Style::Double;
    }
    if style == Style::Literal && (!a.block_allowed || simple_key) {
        style = Style::Double;
    }
    style
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let escape = !is_printable(c) || c == '\u{FEFF}' || is_break(c) || c == '"' || c == '\\';
        if !escape {
            out.push(c);
            continue;
        }
        match c {
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if (c as u32) <= 0xFF => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn literal(s: &str, indent: usize) -> String {
    let mut out = String::from("|");
    let first = s.chars().next();
    if first.is_some_and(|c| c == ' ' || is_break(c)) {
        out.push('2');
    }
    let mut rev = s.chars().rev();
    let last = rev.next();
    let before_last = rev.next();
    if !last.is_some_and(is_break) {
        out.push('-');
    } else if before_last.is_none_or(is_break) {
        out.push('+');
    }
    out.push('\n');
    let mut at_line_start = true;
    for c in s.chars() {
        if is_break(c) {
            out.push(c);
            at_line_start = true;
        } else {
            if at_line_start {
                out.push_str(&" ".repeat(indent));
                at_line_start = false;
            }
            out.push(c);
        }
    }
    if !at_line_start {
        out.push('\n');
    }
    out
}

/// A scalar in value position, ending with a newline. `indent` is the block's content indent.
fn scalar_text(y: &Y, simple_key: bool, indent: usize) -> String {
    match y {
        Y::Null => "null".into(),
        Y::Bool(b) => b.to_string(),
        Y::Int(i) => i.clone(),
        Y::Float(f) => {
            if f.is_nan() {
                ".nan".into()
            } else if f.is_infinite() {
                if *f > 0.0 { ".inf" } else { "-.inf" }.into()
            } else {
                go_fmt_g(*f)
            }
        }
        Y::Str(s) => match choose_style(s, simple_key) {
            Style::Plain => s.clone(),
            Style::Single => format!("'{}'", s.replace('\'', "''")),
            Style::Double => double_quoted(s),
            Style::Literal => literal(s, indent),
        },
        Y::Seq(_) => "[]".into(),
        Y::Map(_) => "{}".into(),
    }
}

fn is_block(y: &Y) -> bool {
    match y {
        Y::Seq(items) => !items.is_empty(),
        Y::Map(entries) => !entries.is_empty(),
        _ => false,
    }
}

/// Writes `y` after an indicator (`key:`, `- `, `? `) on the current line.
fn write_after_indicator(out: &mut String, y: &Y, indent: usize, inline_block: bool) {
    if is_block(y) {
        if inline_block {
            write_block(out, y, indent, true);
        } else {
            out.push('\n');
            write_block(out, y, indent, false);
        }
    } else {
        let text = scalar_text(y, false, indent);
        if !inline_block {
            out.push(' ');
        }
        out.push_str(&text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
}

/// Writes a non-empty block collection whose items sit at column `indent`. When `inline`, the
/// first item continues the current line (after `- `).
fn write_block(out: &mut String, y: &Y, indent: usize, inline: bool) {
    let pad = " ".repeat(indent);
    match y {
        Y::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 || !inline {
                    out.push_str(&pad);
                }
                out.push_str("- ");
                write_after_indicator(out, item, indent + 2, true);
            }
        }
        Y::Map(entries) => {
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 || !inline {
                    out.push_str(&pad);
                }
                let key = Y::Str(k.clone());
                let simple = scalar_text(&key, true, indent + 2);
                if k.len() <= 128 && !analyze(k).multiline {
                    out.push_str(&simple);
                    out.push(':');
                    write_after_indicator(out, v, indent + 2, false);
                } else {
                    out.push_str("? ");
                    write_after_indicator(out, &key, indent + 2, true);
                    out.push_str(&pad);
                    out.push(':');
                    write_after_indicator(out, v, indent + 2, false);
                }
            }
        }
        other => {
            out.push_str(&scalar_text(other, false, indent));
            out.push('\n');
        }
    }
}

fn yaml_marshal(v: &Value) -> String {
    let y = to_y(&to_json_value(v));
    let mut out = String::new();
    if is_block(&y) {
        write_block(&mut out, &y, 0, false);
    } else {
        let text = scalar_text(&y, false, 2);
        out.push_str(&text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

pub(super) fn marshal(args: &[Value], _: &Context) -> BuiltinResult {
    Ok(Some(Value::String(yaml_marshal(arg(args, 1)?))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::call;
    use super::*;

    fn v(s: &str) -> Value {
        Value::parse_rego(s).unwrap()
    }

    fn unmarshal_ok(text: &str) -> Value {
        call("yaml.unmarshal", &[Value::str(text)])
            .unwrap()
            .unwrap()
    }

    #[test]
    fn unmarshal_core_schema() {
        assert_eq!(
            unmarshal_ok(
                "a: yes\nb: true\nc: 0x1F\nd: 1.50\ne: 2023-01-01\nf: ~\ng: '1'\nh: 1e3\n"
            ),
            v(
                r#"{"a": "yes", "b": true, "c": 31, "d": 1.5, "e": "2023-01-01", "f": null, "g": "1", "h": 1000}"#
            )
        );
        assert_eq!(
            unmarshal_ok("base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n"),
            v(r#"{"base": {"x": 1, "y": 2}, "derived": {"x": 1, "y": 3}}"#)
        );
        assert_eq!(
            unmarshal_ok("1: a\ntrue: b\n"),
            v(r#"{"1": "a", "true": "b"}"#)
        );
        assert_eq!(unmarshal_ok(""), Value::Null);
        assert_eq!(unmarshal_ok("a: 1\n---\nb: 2\n"), v(r#"{"a": 1}"#));
    }

    #[test]
    fn invalid_yaml() {
        for bad in ["a: .inf", "a: [1, 2", "  a:\nb: 1", "? ~\n: 1", "a: *nope"] {
            assert_eq!(
                call("yaml.is_valid", &[Value::str(bad)]),
                Ok(Some(Value::Bool(false))),
                "{bad}"
            );
            assert!(call("yaml.unmarshal", &[Value::str(bad)]).is_err(), "{bad}");
        }
        assert_eq!(
            call("yaml.is_valid", &[Value::int(1)]),
            Ok(Some(Value::Bool(false)))
        );
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            doc.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        assert!(call("yaml.unmarshal", &[Value::str(doc)]).is_err());
    }

    #[test]
    fn marshal_like_go_yaml() {
        let doc = v(
            r#"{"a": [1, {"b": 2, "c": [3, [4, 5]]}], "m": "line1\nline2", "t": "  lead\n", "k": {"x y": "true", "n": null, "e": {}, "f": [], "g": "", "h": "a: b", "i": "2023-01-01", "j": 1.5, "o": "yes", "p": "-", "q": "@x", "r": "a #b", "s": "x\ty", "u": "é", "v": "\u0001"}}"#,
        );
        let want = "a:\n  - 1\n  - b: 2\n    c:\n      - 3\n      - - 4\n        - 5\nk:\n  e: {}\n  f: []\n  g: \"\"\n  h: 'a: b'\n  i: \"2023-01-01\"\n  j: 1.5\n  \"n\": null\n  o: \"yes\"\n  p: '-'\n  q: '@x'\n  r: 'a #b'\n  s: \"x\\ty\"\n  u: é\n  v: \"\\x01\"\n  x y: \"true\"\nm: |-\n  line1\n  line2\nt: |2\n    lead\n";
        assert_eq!(call("yaml.marshal", &[doc]), Ok(Some(Value::str(want))));
        assert_eq!(
            call("yaml.marshal", &[Value::str("x")]),
            Ok(Some(Value::str("x\n")))
        );
        assert_eq!(
            call("yaml.marshal", &[v(r#"{"a\nb": 1}"#)]),
            Ok(Some(Value::str("? |-\n  a\n  b\n: 1\n")))
        );
        assert_eq!(natural_cmp("a2", "a10"), std::cmp::Ordering::Less);
    }
}
