//! The filter language (as Akvorado's): `SrcCountry = "FR" AND AppProto IN ("tls", "quic")
//! AND DstPort != 443`, `SrcAddr << 10.0.0.0/8`, `SNI LIKE "%.example.com"`, `NOT`, `( )`.
//!
//! Hand-written (a lexer and a recursive-descent parser) rather than `pest`/`chumsky`: the
//! grammar is six productions, and the console needs two things those crates make awkward:
//! byte-exact error spans for the editor and the parser state at the cursor for completion
//! ([`context`]). The fuzz target `fuzz/fuzz_targets/console_filter.rs` and the property tests
//! below guard it.
//!
//! Safety of the SQL: the parser resolves field names against [`Catalog`] (only known columns),
//! parses every literal into a typed value (number, protocol, 16 address bytes, string), and
//! [`to_sql`] renders numbers and addresses from those values and strings through [`quote`],
//! the one escaping function, tested against the server. No user text reaches SQL otherwise.

use crate::schema::{dim_expr, proto_of, Catalog, Dialect, Field, Kind};
use std::net::IpAddr;

/// Longest filter accepted, and deepest nesting (keeps recursion bounded on hostile input).
pub const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 64;
const MAX_LIST: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    pub message: String,
    /// Byte offsets of the offending text.
    pub start: usize,
    pub end: usize,
}

fn err<T>(message: impl Into<String>, start: usize, end: usize) -> Result<T, FilterError> {
    Err(FilterError {
        message: message.into(),
        start,
        end,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    InNet,
    NotInNet,
}

impl Op {
    fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::InNet | Op::NotInNet => "<<",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    Op(Op),
}

#[derive(Clone, Debug, PartialEq)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'_' | b'-')
}

/// Splits the input into tokens; with `lenient`, stops at the first error instead (completion).
fn lex(s: &str, lenient: bool) -> Result<Vec<Token>, FilterError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let (tok, len) = match c {
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b',' => (Tok::Comma, 1),
            b'=' => (
                Tok::Op(Op::Eq),
                1 + usize::from(b.get(i + 1) == Some(&b'=')),
            ),
            b'!' if s[i..].starts_with("!<<") => (Tok::Op(Op::NotInNet), 3),
            b'!' if s[i..].starts_with("!=") => (Tok::Op(Op::Ne), 2),
            b'<' if s[i..].starts_with("<<") => (Tok::Op(Op::InNet), 2),
            b'<' if s[i..].starts_with("<=") => (Tok::Op(Op::Le), 2),
            b'<' if s[i..].starts_with("<>") => (Tok::Op(Op::Ne), 2),
            b'<' => (Tok::Op(Op::Lt), 1),
            b'>' if s[i..].starts_with(">=") => (Tok::Op(Op::Ge), 2),
            b'>' => (Tok::Op(Op::Gt), 1),
            b'"' | b'\'' => match string(s, i) {
                Ok((v, len)) => (Tok::Str(v), len),
                Err(e) if lenient => {
                    let _ = e;
                    break;
                }
                Err(e) => return Err(e),
            },
            c if is_word_byte(c) => {
                let len = b[i..].iter().take_while(|&&x| is_word_byte(x)).count();
                (Tok::Word(s[i..i + len].to_string()), len)
            }
            _ => {
                if lenient {
                    break;
                }
                let ch = s[i..].chars().next().unwrap_or('?');
                return err(format!("unexpected character {ch:?}"), i, i + ch.len_utf8());
            }
        };
        i += len;
        out.push(Token { tok, start, end: i });
    }
    Ok(out)
}

/// A quoted string at `at`: its value and length in bytes. `\\`, `\"`, `\'` escape.
fn string(s: &str, at: usize) -> Result<(String, usize), FilterError> {
    let quote = s.as_bytes()[at] as char;
    let mut v = String::new();
    let mut chars = s[at + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e)) => v.push(e),
                None => break,
            },
            c if c == quote => return Ok((v, k + 2)),
            c => v.push(c),
        }
    }
    err("unterminated string", at, s.len())
}

/// A literal, parsed and typed for its field.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Num(u64),
    Addr([u8; 16]),
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(&'static Field, Op, Value),
    In(&'static Field, bool, Vec<Value>),
    /// field, negated, case-insensitive, pattern
    Like(&'static Field, bool, bool, String),
    /// field, negated, first and last address of the network
    Net(&'static Field, bool, [u8; 16], [u8; 16]),
}

impl Expr {
    /// The fields the filter reads (decides which tables can answer it).
    pub fn fields(&self, out: &mut Vec<&'static Field>) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.fields(out);
                b.fields(out);
            }
            Expr::Not(a) => a.fields(out),
            Expr::Cmp(f, ..) | Expr::In(f, ..) | Expr::Like(f, ..) | Expr::Net(f, ..) => {
                out.push(f)
            }
        }
    }
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    cat: &'a Catalog,
    len: usize,
    depth: usize,
}

fn keyword(t: &Token, kw: &str) -> bool {
    matches!(&t.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
}

/// Parses a filter; an empty (or blank) one gives `None` (no condition).
pub fn parse(s: &str, cat: &Catalog) -> Result<Option<Expr>, FilterError> {
    if s.len() > MAX_LEN {
        return err(
            format!("filter longer than {MAX_LEN} bytes"),
            MAX_LEN,
            s.len(),
        );
    }
    let toks = lex(s, false)?;
    if toks.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        cat,
        len: s.len(),
        depth: 0,
    };
    let e = p.or()?;
    if let Some(t) = p.peek() {
        return err("expected AND, OR or the end of the filter", t.start, t.end);
    }
    Ok(Some(e))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn next(&mut self, what: &str) -> Result<Token, FilterError> {
        match self.toks.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t.clone())
            }
            None => err(format!("expected {what}"), self.len, self.len),
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.and()?;
        while self.peek().is_some_and(|t| keyword(t, "OR")) {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.unary()?;
        while self.peek().is_some_and(|t| keyword(t, "AND")) {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let t = self.next("a condition (Field = value)")?;
        if self.depth >= MAX_DEPTH {
            return err("nested too deeply", t.start, t.end);
        }
        self.depth += 1;
        let r = if keyword(&t, "NOT") {
            self.unary().map(|e| Expr::Not(Box::new(e)))
        } else if t.tok == Tok::LParen {
            let e = self.or()?;
            let c = self.next("')'")?;
            if c.tok != Tok::RParen {
                return err("expected ')'", c.start, c.end);
            }
            Ok(e)
        } else {
            self.condition(t)
        };
        self.depth -= 1;
        r
    }

    fn condition(&mut self, t: Token) -> Result<Expr, FilterError> {
        let Tok::Word(name) = &t.tok else {
            return err("expected a field name", t.start, t.end);
        };
        let Some(field) = self.cat.field(name) else {
            return err(format!("unknown field {name:?}"), t.start, t.end);
        };
        if field.kind == Kind::DimOnly {
            let m = format!(
                "{} is a dimension only; filter with {}Addr << prefix",
                field.name,
                &field.name[..3]
            );
            return err(m, t.start, t.end);
        }
        let op = self.next("an operator after the field")?;
        let negated = keyword(&op, "NOT");
        let op = if negated {
            self.next("IN or LIKE after NOT")?
        } else {
            op
        };
        match &op.tok {
            Tok::Op(o) if !negated => self.compare(field, *o, &op),
            Tok::Word(w) if w.eq_ignore_ascii_case("IN") => self.list(field, negated),
            Tok::Word(w) if w.eq_ignore_ascii_case("LIKE") || w.eq_ignore_ascii_case("ILIKE") => {
                if field.kind != Kind::Str {
                    return err(
                        format!("LIKE needs a text field; {} is not", field.name),
                        op.start,
                        op.end,
                    );
                }
                let ci = w.eq_ignore_ascii_case("ILIKE");
                let v = self.next("a pattern")?;
                match v.tok {
                    Tok::Str(s) | Tok::Word(s) => Ok(Expr::Like(field, negated, ci, s)),
                    _ => err("expected a pattern", v.start, v.end),
                }
            }
            _ => err(
                "expected an operator (=, !=, <, >, IN, LIKE, <<)",
                op.start,
                op.end,
            ),
        }
    }

    fn compare(&mut self, field: &'static Field, op: Op, at: &Token) -> Result<Expr, FilterError> {
        let ordered = matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge);
        let net = matches!(op, Op::InNet | Op::NotInNet);
        let ok = match field.kind {
            Kind::Num | Kind::Proto => !net,
            Kind::Str => !ordered && !net,
            Kind::Addr => !ordered,
            Kind::DimOnly => false,
        };
        if !ok {
            let m = format!(
                "operator {} does not apply to {} ({})",
                op.sql(),
                field.name,
                field.kind.label()
            );
            return err(m, at.start, at.end);
        }
        let v = self.next("a value")?;
        if net {
            let (lo, hi) = network(&v)?;
            return Ok(Expr::Net(field, op == Op::NotInNet, lo, hi));
        }
        Ok(Expr::Cmp(field, op, value(field, &v)?))
    }

    fn list(&mut self, field: &'static Field, negated: bool) -> Result<Expr, FilterError> {
        let open = self.next("'(' after IN")?;
        if open.tok != Tok::LParen {
            return err("expected '(' after IN", open.start, open.end);
        }
        let mut vals = Vec::new();
        loop {
            let v = self.next("a value")?;
            vals.push(value(field, &v)?);
            if vals.len() > MAX_LIST {
                return err(format!("more than {MAX_LIST} values"), v.start, v.end);
            }
            let sep = self.next("',' or ')'")?;
            match sep.tok {
                Tok::Comma => continue,
                Tok::RParen => break,
                _ => return err("expected ',' or ')'", sep.start, sep.end),
            }
        }
        Ok(Expr::In(field, negated, vals))
    }
}

/// A literal for a field, checked against its kind.
fn value(field: &Field, t: &Token) -> Result<Value, FilterError> {
    let text = match &t.tok {
        Tok::Str(s) | Tok::Word(s) => s.as_str(),
        _ => {
            return err(
                format!("expected a value for {}", field.name),
                t.start,
                t.end,
            )
        }
    };
    let bad = |what: &str| {
        err(
            format!("{} takes {what}, not {text:?}", field.name),
            t.start,
            t.end,
        )
    };
    match field.kind {
        Kind::Str | Kind::DimOnly => Ok(Value::Str(text.to_string())),
        Kind::Num => text
            .parse::<u64>()
            .map(Value::Num)
            .or_else(|_| bad("a number")),
        Kind::Proto => match proto_of(text) {
            Some(n) => Ok(Value::Num(n.into())),
            None => bad("a protocol name (TCP, UDP, ICMP, ...) or number"),
        },
        Kind::Addr => match text.parse::<IpAddr>() {
            Ok(a) => Ok(Value::Addr(bytes16(a))),
            Err(_) => bad("an IP address"),
        },
    }
}

fn bytes16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

/// `10.0.0.0/8` or `2001:db8::/32` as the first and last 16-byte address of the network.
fn network(t: &Token) -> Result<([u8; 16], [u8; 16]), FilterError> {
    let text = match &t.tok {
        Tok::Str(s) | Tok::Word(s) => s.as_str(),
        _ => return err("expected a network (10.0.0.0/8)", t.start, t.end),
    };
    let bad = || {
        err(
            format!("expected a network like 10.0.0.0/8, not {text:?}"),
            t.start,
            t.end,
        )
    };
    let (a, len) = text.split_once('/').unwrap_or((text, ""));
    let Ok(addr) = a.parse::<IpAddr>() else {
        return bad();
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u32 = if len.is_empty() {
        max
    } else {
        match len.parse() {
            Ok(n) => n,
            Err(_) => return bad(),
        }
    };
    if len > max {
        return bad();
    }
    let bits = if addr.is_ipv4() { len + 96 } else { len };
    let v = u128::from_be_bytes(bytes16(addr));
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    Ok(((v & mask).to_be_bytes(), (v | !mask).to_be_bytes()))
}

/// The one function that turns text into a ClickHouse string literal: backslash and quote
/// escaped, control bytes as `\xHH`. Works the same on 18.16 and current servers.
pub fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('\'');
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\'' => o.push_str("\\'"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => o.push_str(&format!("\\x{:02X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('\'');
    o
}

fn literal(v: &Value, d: Dialect) -> String {
    match v {
        Value::Str(s) => quote(s),
        Value::Num(n) => n.to_string(),
        Value::Addr(b) => d.addr_literal(*b),
    }
}

/// The column expression a condition compares (protocol numbers compare as numbers).
fn column(f: &Field) -> String {
    match f.kind {
        Kind::DimOnly => dim_expr(f),
        _ => f.column.to_string(),
    }
}

/// Renders a parsed filter as a ClickHouse boolean expression.
pub fn to_sql(e: &Expr, d: Dialect) -> String {
    match e {
        Expr::And(a, b) => format!("({} AND {})", to_sql(a, d), to_sql(b, d)),
        Expr::Or(a, b) => format!("({} OR {})", to_sql(a, d), to_sql(b, d)),
        Expr::Not(a) => format!("(NOT {})", to_sql(a, d)),
        Expr::Cmp(f, op, v) => format!("({} {} {})", column(f), op.sql(), literal(v, d)),
        Expr::In(f, neg, vs) if f.kind == Kind::Addr => {
            // Address literals are function calls, which 18.16 does not fold inside IN.
            let c = column(f);
            let l: Vec<String> = vs
                .iter()
                .map(|v| format!("{c} = {}", literal(v, d)))
                .collect();
            let not = if *neg { "NOT " } else { "" };
            format!("({not}({}))", l.join(" OR "))
        }
        Expr::In(f, neg, vs) => {
            let l: Vec<String> = vs.iter().map(|v| literal(v, d)).collect();
            let not = if *neg { "NOT " } else { "" };
            format!("({} {not}IN ({}))", column(f), l.join(", "))
        }
        Expr::Like(f, neg, ci, p) => {
            let not = if *neg { "NOT " } else { "" };
            if *ci {
                format!(
                    "({not}like(lowerUTF8({}), lowerUTF8({})))",
                    column(f),
                    quote(p)
                )
            } else {
                format!("({not}like({}, {}))", column(f), quote(p))
            }
        }
        Expr::Net(f, neg, lo, hi) => {
            let not = if *neg { "NOT " } else { "" };
            let c = column(f);
            format!(
                "({not}({c} >= {} AND {c} <= {}))",
                d.addr_literal(*lo),
                d.addr_literal(*hi)
            )
        }
    }
}

/// What is expected at the cursor, for completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Field,
    Operator(&'static Field),
    Value(&'static Field),
    /// AND / OR (or `,` / `)` inside a list).
    Connective {
        in_list: bool,
    },
}

/// The completion context: what is expected and the partial word being typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub expect: Option<Expect>,
    /// Byte range the completion replaces.
    pub from: usize,
    pub to: usize,
    pub prefix: String,
}

/// Walks the tokens before `cursor` with the parser's states, leniently.
pub fn context(s: &str, cursor: usize, cat: &Catalog) -> Context {
    let mut cursor = cursor.min(s.len());
    while !s.is_char_boundary(cursor) {
        cursor -= 1;
    }
    let head = &s[..cursor];
    let mut toks = lex(head, true).unwrap_or_default();
    let mut prefix = String::new();
    let mut from = cursor;
    let partial =
        matches!(toks.last(), Some(t) if t.end == cursor && matches!(t.tok, Tok::Word(_)));
    if partial {
        let t = toks.pop().expect("checked");
        if let Tok::Word(w) = t.tok {
            prefix = w;
        }
        from = t.start;
    } else if let Some(q) = head.rfind(['"', '\'']) {
        // An open string at the end: complete its content.
        if lex(head, false).is_err() && toks.last().is_none_or(|t| t.end <= q) {
            prefix = head[q + 1..].to_string();
            from = q;
        }
    }
    Context {
        expect: walk(&toks, cat),
        from,
        to: cursor,
        prefix,
    }
}

#[derive(Clone, Copy)]
enum St {
    Field,
    Op(&'static Field),
    InOpen(&'static Field),
    Value(&'static Field, bool),
    AfterValue(bool),
}

fn walk(toks: &[Token], cat: &Catalog) -> Option<Expect> {
    let mut st = St::Field;
    for t in toks {
        let word = |kw: &str| keyword(t, kw);
        st = match (st, &t.tok) {
            (St::Field, Tok::LParen) => St::Field,
            (St::Field, Tok::Word(_)) if word("NOT") => St::Field,
            (St::Field, Tok::Word(w)) => St::Op(cat.field(w)?),
            (St::Op(f), Tok::Word(_)) if word("NOT") => St::Op(f),
            (St::Op(f), Tok::Word(_)) if word("IN") => St::InOpen(f),
            (St::Op(f), Tok::Word(_)) if word("LIKE") || word("ILIKE") => St::Value(f, false),
            (St::Op(f), Tok::Op(_)) => St::Value(f, false),
            (St::InOpen(f), Tok::LParen) => St::Value(f, true),
            (St::Value(_, l), Tok::Word(_) | Tok::Str(_)) => St::AfterValue(l),
            (St::AfterValue(true), Tok::Comma) => match walk_back_field(toks, t.start, cat) {
                Some(f) => St::Value(f, true),
                None => return None,
            },
            (St::AfterValue(_), Tok::RParen) => St::AfterValue(false),
            (St::AfterValue(false), Tok::Word(_)) if word("AND") || word("OR") => St::Field,
            _ => return None,
        };
    }
    Some(match st {
        St::Field => Expect::Field,
        St::Op(f) => Expect::Operator(f),
        St::InOpen(_) => return None,
        St::Value(f, _) => Expect::Value(f),
        St::AfterValue(l) => Expect::Connective { in_list: l },
    })
}

/// The field of the IN list that contains byte `at`.
fn walk_back_field(toks: &[Token], at: usize, cat: &Catalog) -> Option<&'static Field> {
    let i = toks
        .iter()
        .rposition(|t| t.start < at && keyword(t, "IN"))?;
    let j = if i >= 2 && keyword(&toks[i - 1], "NOT") {
        i - 2
    } else {
        i.checked_sub(1)?
    };
    match &toks[j].tok {
        Tok::Word(w) => cat.field(w),
        _ => None,
    }
}

/// Operators offered after a field of this kind.
pub fn operators(k: Kind) -> &'static [&'static str] {
    match k {
        Kind::Str => &["=", "!=", "IN", "NOT IN", "LIKE", "NOT LIKE", "ILIKE"],
        Kind::Num | Kind::Proto => &["=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN"],
        Kind::Addr => &["=", "!=", "<<", "!<<", "IN", "NOT IN"],
        Kind::DimOnly => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::FIELDS;
    use proptest::prelude::*;

    fn cat() -> Catalog {
        let mut c = Catalog::default();
        for f in FIELDS {
            c.flow_columns.insert(f.column.into());
        }
        c
    }

    const OLD: Dialect = Dialect { modern: false };
    const NEW: Dialect = Dialect { modern: true };

    fn sql(s: &str) -> String {
        to_sql(&parse(s, &cat()).unwrap().unwrap(), OLD)
    }

    fn error(s: &str) -> FilterError {
        parse(s, &cat()).unwrap_err()
    }

    #[test]
    fn the_akvorado_example_parses_to_known_columns_and_quoted_values() {
        assert_eq!(
            sql(r#"SrcCountry = "FR" AND AppProto IN ("tls", "quic") AND DstPort != 443"#),
            "(((src_country = 'FR') AND (app_proto IN ('tls', 'quic'))) AND (dest_port != 443))"
        );
        assert_eq!(
            sql("proto = tcp or not vlan > 10"),
            "((proto = 6) OR (NOT (vlan > 10)))"
        );
        assert_eq!(
            sql("SNI NOT LIKE '%.example.com' AND JA4 ILIKE 't13%'"),
            "((NOT like(tls_sni, '%.example.com')) AND (like(lowerUTF8(ja4), lowerUTF8('t13%'))))"
        );
        assert_eq!(parse("  ", &cat()).unwrap(), None);
    }

    #[test]
    fn protocols_are_named_as_eve_names_them_in_any_case() {
        assert_eq!(sql("proto = igmp"), "(proto = 2)");
        assert_eq!(sql("proto = IPv6-ICMP"), "(proto = 58)");
        assert_eq!(sql("proto = icmpv6"), "(proto = 58)");
        assert_eq!(
            sql("proto IN (ESP, 'IP-in-IP', 200)"),
            "(proto IN (50, 4, 200))"
        );
        // `Any` names five numbers; 256 is no protocol.
        assert!(error("proto = Any").message.contains("a protocol name"));
        assert!(error("proto = 256").message.contains("a protocol name"));
    }

    #[test]
    fn cidr_becomes_a_byte_range_in_both_dialects() {
        let e = parse("SrcAddr << 10.1.2.3/8", &cat()).unwrap().unwrap();
        assert_eq!(
            to_sql(&e, NEW),
            "((src_ip >= toIPv6('::ffff:10.0.0.0') AND src_ip <= toIPv6('::ffff:10.255.255.255')))"
        );
        assert!(to_sql(&e, OLD).contains("unhex('00000000000000000000FFFF0A000000')"));
        let v6 = parse("DstAddr !<< 2001:db8::/32", &cat()).unwrap().unwrap();
        assert_eq!(
            to_sql(&v6, NEW),
            "(NOT (dest_ip >= toIPv6('2001:db8::') AND dest_ip <= toIPv6('2001:db8:ffff:ffff:ffff:ffff:ffff:ffff')))"
        );
        assert_eq!(
            sql("SrcAddr IN (10.0.0.1)"),
            "((src_ip = toFixedString(unhex('00000000000000000000FFFF0A000001'), 16)))"
        );
    }

    #[test]
    fn errors_name_the_problem_and_point_at_it() {
        let e = error("AppProto = ");
        assert_eq!((e.start, e.end), (11, 11));
        assert!(e.message.contains("value"), "{e:?}");
        let e = error("Nope = 1");
        assert_eq!(
            (e.start, e.end, e.message.as_str()),
            (0, 4, "unknown field \"Nope\"")
        );
        let e = error("DstPort = http");
        assert_eq!(e.start, 10);
        assert!(e.message.contains("number"));
        assert!(error("SrcAddr < 1.2.3.4")
            .message
            .contains("does not apply"));
        assert!(error("DstPort LIKE '4%'").message.contains("LIKE"));
        assert!(error("SrcAddr << 10.0.0.0/33").message.contains("network"));
        assert_eq!(error("AppProto = 'x").message, "unterminated string");
        assert_eq!(error("(AppProto = x").message, "expected ')'");
        assert_eq!(error("AppProto = x y").start, 13);
        assert_eq!(error("AppProto = x; DROP").start, 12);
        assert!(error("SrcNet = 1").message.contains("dimension only"));
        assert!(error(&"(".repeat(100)).message.contains("deeply"));
        assert!(error(&"x".repeat(MAX_LEN + 1)).message.contains("longer"));
    }

    #[test]
    fn quoting_escapes_quotes_backslashes_and_control_bytes() {
        assert_eq!(quote("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(quote("\0\n\u{7f}é"), "'\\x00\\x0A\\x7Fé'");
    }

    #[test]
    fn completion_knows_what_comes_next() {
        let c = cat();
        let at = |s: &str| context(s, s.len(), &c);
        assert_eq!(at("").expect, Some(Expect::Field));
        let x = at("AppProto = tls AND Sr");
        assert_eq!(
            (x.expect, x.prefix.as_str(), x.from),
            (Some(Expect::Field), "Sr", 19)
        );
        assert_eq!(
            at("DstPort ").expect,
            Some(Expect::Operator(c.field("DstPort").unwrap()))
        );
        assert_eq!(
            at("DstPort != ").expect,
            Some(Expect::Value(c.field("DstPort").unwrap()))
        );
        let x = at("SNI IN (\"a\", \"ex");
        assert_eq!(x.expect, Some(Expect::Value(c.field("SNI").unwrap())));
        assert_eq!(x.prefix, "ex");
        assert_eq!(
            at("SNI = a ").expect,
            Some(Expect::Connective { in_list: false })
        );
        assert_eq!(
            at("SNI NOT IN (a ").expect,
            Some(Expect::Connective { in_list: true })
        );
        assert_eq!(context("DstPort = 1", 3, &c).prefix, "Dst");
        assert_eq!(context("é", 1, &c).to, 0);
    }

    /// What the rendered SQL may contain: the columns and functions the renderer writes,
    /// keywords, numbers, operators, and string literals that end where the quoting says.
    fn shape_ok(sql: &str) -> bool {
        const WORDS: &[&str] = &[
            "AND",
            "OR",
            "NOT",
            "IN",
            "like",
            "lowerUTF8",
            "toFixedString",
            "unhex",
            "toIPv6",
        ];
        let b = sql.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'\'' {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return false,
                        Some(b'\\') => i += 2,
                        Some(b'\'') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
            } else if c.is_ascii_alphabetic() || c == b'_' {
                let n = b[i..]
                    .iter()
                    .take_while(|x| x.is_ascii_alphanumeric() || **x == b'_')
                    .count();
                let w = &sql[i..i + n];
                if !WORDS.contains(&w) && !FIELDS.iter().any(|f| f.column == w) {
                    return false;
                }
                i += n;
            } else if c.is_ascii_digit() || b" (),=!<>".contains(&c) {
                i += 1;
            } else {
                return false;
            }
        }
        true
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>().prop_map(|s| format!("{s:?}")),
            "[ -~]{0,12}".prop_map(|s| format!("'{s}'")),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<[u8; 4]>().prop_map(|a| format!(
                "{}.{}.{}.{}/{}",
                a[0],
                a[1],
                a[2],
                a[3],
                a[0] % 40
            )),
            any::<u128>().prop_map(|a| std::net::Ipv6Addr::from(a).to_string()),
            Just("tcp".to_string()),
        ]
    }

    fn condition() -> impl Strategy<Value = String> {
        let names: Vec<&'static str> = FIELDS.iter().map(|f| f.name).collect();
        let ops = ["=", "!=", "<", ">=", "<<", "!<<", "LIKE", "NOT ILIKE"];
        (
            proptest::sample::select(names),
            proptest::sample::select(ops.to_vec()),
            value(),
            value(),
        )
            .prop_map(|(f, op, a, b)| {
                if a.len() % 3 == 0 {
                    format!("{f} IN ({a}, {b})")
                } else {
                    format!("{f} {op} {a}")
                }
            })
    }

    fn filter() -> impl Strategy<Value = String> {
        condition().prop_recursive(4, 16, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} AND {b}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) OR {b}")),
                inner.prop_map(|a| format!("NOT ({a})")),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn no_input_produces_sql_outside_the_allowed_shape(s in filter()) {
            if let Ok(Some(e)) = parse(&s, &cat()) {
                for d in [OLD, NEW] {
                    let q = to_sql(&e, d);
                    prop_assert!(shape_ok(&q), "{s:?} gave {q:?}");
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics_and_errors_point_inside(s in "[ -~é\\\\'\"]{0,64}", cur in 0usize..80) {
            match parse(&s, &cat()) {
                Ok(Some(e)) => prop_assert!(shape_ok(&to_sql(&e, OLD))),
                Ok(None) => {}
                Err(e) => prop_assert!(e.start <= e.end && e.end <= s.len()),
            }
            let c = context(&s, cur, &cat());
            prop_assert!(c.from <= c.to && c.to <= s.len());
        }
    }

    #[test]
    fn the_shape_check_rejects_what_it_must() {
        assert!(shape_ok("(app_proto = 'a\\'b')"));
        assert!(!shape_ok("(app_proto = 'a'b')"));
        assert!(!shape_ok("(app_proto = 1); DROP"));
        assert!(!shape_ok("(system = 1)"));
    }
}
