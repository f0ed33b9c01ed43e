//! The rule expression language: a small, typed expression over record fields, parsed once
//! per rule into a tree ([`Expr`]) whose field references, sets, CIDR lists and regular
//! expressions are resolved at parse time, then evaluated per record without allocating in the
//! common case.
//!
//! Written here rather than taken from a CEL implementation: CEL crates evaluate over a
//! dynamic map of values, so every record would first be converted into one (an allocation
//! per field, several times the cost of all our rules), and CEL has no notion of our domain
//! operations (CIDR sets, threat-intel lookups that record what matched, domain parents,
//! entropy). The grammar is small (below) and fuzzed (`fuzz/fuzz_targets/rule_expr.rs`).
//!
//! ```text
//! expr    := or
//! or      := and (("||" | "or") and)*
//! and     := unary (("&&" | "and") unary)*
//! unary   := ("!" | "not") unary | cmp
//! cmp     := sum [ ("==" | "!=" | "<" | "<=" | ">" | ">=") sum
//!                | ["not"] "in" "[" literal, ... "]"
//!                | ("contains" | "startswith" | "endswith") sum
//!                | "matches" STRING ]
//! sum     := product (("+" | "-") product)*
//! product := prim (("*" | "/" | "%") prim)*
//! prim    := INT | FLOAT | STRING | true | false | null | FIELD | FUNC "(" args ")"
//!          | "(" expr ")" | "-" prim
//! ```
//!
//! Fields are the dotted EVE paths of [`crate::record::Field`] (`dest_port`, `dns.rrname`,
//! `dns.answers.rdata` is a list). Semantics: a missing field is `null`; comparisons with
//! `null` are false (`!=` true), `in`/string operators on `null` are false; arithmetic on
//! `null` and operations on mismatched types (a string compared with a number, `len(5)`) are
//! evaluation errors, counted per rule. A list on the left of a comparison or operator
//! matches when any element does. Functions: see [`Func`].

mod eval;
mod parse;

use std::borrow::Cow;
use std::net::IpAddr;

use regex::Regex;
use rustc_hash::FxHashSet;

pub use eval::{Env, EvalError, IntelHit};
pub use parse::{parse, ParseError};

use crate::intel::KindMask;
use crate::record::Field;

/// A value during evaluation; strings borrow from the record or the expression when they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Ip(IpAddr),
    List(Vec<Value<'a>>),
}

impl<'a> Value<'a> {
    pub fn str(s: &'a str) -> Value<'a> {
        Value::Str(Cow::Borrowed(s))
    }

    /// The value as text for group keys, distinct counts and evidence.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Value::Null => out.push('-'),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => {
                let _ = write!(out, "{f}");
            }
            Value::Str(s) => out.push_str(s),
            Value::Ip(IpAddr::V4(a)) => push_ipv4(out, *a),
            Value::Ip(ip) => {
                let _ = write!(out, "{ip}");
            }
            Value::List(l) => {
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.render(out);
                }
            }
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// An IPv4 address in dotted decimal, as its `Display` writes it, without the formatting
/// machinery (group keys render an address per record).
fn push_ipv4(out: &mut String, a: std::net::Ipv4Addr) {
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if o >= 100 {
            out.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            out.push(char::from(b'0' + o / 10 % 10));
        }
        out.push(char::from(b'0' + o % 10));
    }
}

/// A literal of the source text.
#[derive(Debug, Clone, PartialEq)]
pub enum Const {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// The literals of an `in [...]` list, split by type; strings that are addresses or CIDR
/// blocks also match addresses.
#[derive(Debug, Default)]
pub struct Set {
    pub strs: FxHashSet<String>,
    pub ints: FxHashSet<i64>,
    pub nets: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// Built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `len(s)`: characters of a string, elements of a list.
    Len,
    /// `lower(s)`.
    Lower,
    /// `entropy(s)`: Shannon entropy in bits per byte.
    Entropy,
    /// `labels(name)`: number of dot-separated labels.
    Labels,
    /// `parent(name, n)`: the last `n` labels (`parent("a.b.c.d", 2)` = `"c.d"`); the whole
    /// name when it has fewer.
    Parent,
    /// `first_label(name)`: the leftmost label.
    FirstLabel,
    /// `longest_label(name)`: the longest label (tunnels hide data in one).
    LongestLabel,
    /// `exists(x)`: the field is present.
    Exists,
    /// `time(s)`: an EVE or certificate timestamp in Unix seconds (compare with `ts`).
    Time,
    /// `private(ip)`: RFC 1918, loopback, link-local, CGNAT, unique-local.
    Private,
    /// `cidr(ip, "10.0.0.0/8", ...)`: in any of the blocks.
    Cidr,
    /// `tcp_flag(flags, "SYN")`: a TCP flag is set in a `tcp.tcp_flags*` field.
    TcpFlag,
    /// `intel(x [, "DOMAIN"])`: the value (any element of a list) is an indicator, of the kinds
    /// the field can hold, or of the named kind; records what matched for the alert.
    Intel,
    /// `str(x)`, `int(x)`.
    Str,
    Int,
}

impl Func {
    pub fn by_name(s: &str) -> Option<Func> {
        Some(match s {
            "len" => Func::Len,
            "lower" => Func::Lower,
            "entropy" => Func::Entropy,
            "labels" => Func::Labels,
            "parent" => Func::Parent,
            "first_label" => Func::FirstLabel,
            "longest_label" => Func::LongestLabel,
            "exists" => Func::Exists,
            "time" => Func::Time,
            "private" => Func::Private,
            "cidr" => Func::Cidr,
            "tcp_flag" => Func::TcpFlag,
            "intel" => Func::Intel,
            "str" => Func::Str,
            "int" => Func::Int,
            _ => return None,
        })
    }
}

/// A parsed expression.
#[derive(Debug)]
pub enum Expr {
    Const(Const),
    Field(Field),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    In(Box<Expr>, Box<Set>, bool),
    StrOp(StrOp, Box<Expr>, Box<Expr>),
    Matches(Box<Expr>, Box<Regex>),
    /// A function with its arguments (constant arguments already folded where the function
    /// needs them: `parent`'s count, `tcp_flag`'s bit, `cidr`'s blocks).
    Call(Func, Vec<Expr>),
    Cidr(Box<Expr>, Box<Set>),
    TcpFlag(Box<Expr>, i64),
    Parent(Box<Expr>, usize),
    /// `intel(x)`: kinds to look in, and the field name for the alert's record of the hit.
    Intel(Box<Expr>, KindMask, &'static str),
}

impl Expr {
    /// The event types a record must have for this expression to hold, when the expression
    /// says so at its top (`event_type == "dns" && ...`, or an `||` of such): the engine
    /// skips the rule for other records with one string comparison.
    pub fn required_event_types(&self) -> Option<Vec<String>> {
        match self {
            Expr::Cmp(CmpOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
                (Expr::Field(Field::EventType), Expr::Const(Const::Str(s)))
                | (Expr::Const(Const::Str(s)), Expr::Field(Field::EventType)) => {
                    Some(vec![s.clone()])
                }
                _ => None,
            },
            Expr::And(a, b) => a
                .required_event_types()
                .or_else(|| b.required_event_types()),
            Expr::Or(a, b) => {
                let mut v = a.required_event_types()?;
                v.extend(b.required_event_types()?);
                Some(v)
            }
            _ => None,
        }
    }

    /// The expression without its leading `event_type == "..."` conjunct, for a rule that
    /// the engine only gives records of that type (see [`Expr::required_event_types`]): the
    /// comparison would hold for every record it sees.
    pub fn without_event_type_guard(self) -> Expr {
        match self {
            Expr::And(a, b) if a.is_event_type_eq() => *b,
            Expr::And(a, b) => Expr::And(Box::new(a.without_event_type_guard()), b),
            e => e,
        }
    }

    fn is_event_type_eq(&self) -> bool {
        match self {
            Expr::Cmp(CmpOp::Eq, a, b) => matches!(
                (a.as_ref(), b.as_ref()),
                (Expr::Field(Field::EventType), Expr::Const(Const::Str(_)))
                    | (Expr::Const(Const::Str(_)), Expr::Field(Field::EventType))
            ),
            _ => false,
        }
    }

    /// The record fields this expression reads.
    pub fn fields(&self, out: &mut Vec<Field>) {
        match self {
            Expr::Const(_) => {}
            Expr::Field(f) => out.push(*f),
            Expr::Not(a)
            | Expr::Neg(a)
            | Expr::In(a, _, _)
            | Expr::Matches(a, _)
            | Expr::Cidr(a, _)
            | Expr::TcpFlag(a, _)
            | Expr::Parent(a, _)
            | Expr::Intel(a, _, _) => a.fields(out),
            Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Cmp(_, a, b)
            | Expr::Arith(_, a, b)
            | Expr::StrOp(_, a, b) => {
                a.fields(out);
                b.fields(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.fields(out)),
        }
    }
}

#[cfg(test)]
mod tests;
