//! Lexer and recursive-descent parser of the expression grammar (see the module above).
//! Nesting is limited ([`MAX_DEPTH`]) so that hostile input cannot overflow the stack.

use super::{ArithOp, CmpOp, Const, Expr, Func, Set, StrOp};
use crate::intel::{Kind, KindMask};
use crate::record::Field;

const MAX_DEPTH: usize = 64;
/// Longest expression accepted (bytes).
pub const MAX_LEN: usize = 64 * 1024;

/// A parse error: where (byte offset), what, and the field name when one is to blame.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub pos: usize,
    pub msg: String,
    pub field: Option<String>,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at offset {}: {}", self.pos, self.msg)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Op(&'static str),
    End,
}

const OPS: [&str; 19] = [
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[", "]",
    ",",
];

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |pos, msg: &str| ParseError {
        pos,
        msg: msg.to_string(),
        field: None,
    };
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'"' || c == b'\'' {
            let (s, next) = lex_string(src, i).ok_or_else(|| err(i, "unterminated string"))?;
            out.push((Tok::Str(s), i));
            i = next;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let t = &src[start..i];
            let tok = if t.contains('.') {
                Tok::Float(t.parse().map_err(|_| err(start, "bad number"))?)
            } else {
                Tok::Int(t.parse().map_err(|_| err(start, "number out of range"))?)
            };
            out.push((tok, start));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            out.push((Tok::Ident(src[start..i].to_string()), start));
        } else if let Some(op) = OPS.iter().find(|op| b[i..].starts_with(op.as_bytes())) {
            out.push((Tok::Op(op), i));
            i += op.len();
        } else {
            return Err(err(
                i,
                &format!(
                    "unexpected character {:?}",
                    src[i..].chars().next().unwrap_or('?')
                ),
            ));
        }
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

/// A quoted string from `at` (its quote): the text with `\\`, `\"`, `\'`, `\n`, `\t` escapes
/// resolved (others kept as written, so regular expressions read naturally), and the offset
/// after the closing quote.
fn lex_string(src: &str, at: usize) -> Option<(String, usize)> {
    let quote = src.as_bytes()[at] as char;
    let mut out = String::new();
    let mut chars = src[at + 1..].char_indices();
    while let Some((j, c)) = chars.next() {
        match c {
            '\\' => match chars.next()?.1 {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                q if q == quote => out.push(q),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c if c == quote => return Some((out, at + 1 + j + 1)),
            c => out.push(c),
        }
    }
    None
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    depth: usize,
}

/// Parses an expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_LEN {
        return Err(ParseError {
            pos: MAX_LEN,
            msg: format!("expression longer than {MAX_LEN} bytes"),
            field: None,
        });
    }
    let mut p = Parser {
        toks: lex(src)?,
        at: 0,
        depth: 0,
    };
    let e = p.expr()?;
    match p.peek() {
        Tok::End => Ok(e),
        t => Err(p.error(format!("unexpected {}", describe(t)))),
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Int(i) => format!("number {i}"),
        Tok::Float(f) => format!("number {f}"),
        Tok::Op(o) => format!("`{o}`"),
        Tok::End => "end of expression".to_string(),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].0
    }

    fn pos(&self) -> usize {
        self.toks[self.at].1
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.at].0.clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn error(&self, msg: String) -> ParseError {
        ParseError {
            pos: self.pos(),
            msg,
            field: None,
        }
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }

    fn expect_op(&mut self, op: &str) -> Result<(), ParseError> {
        if self.is_op(op) {
            self.next();
            Ok(())
        } else {
            Err(self.error(format!("expected `{op}`, found {}", describe(self.peek()))))
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut e = self.and()?;
        while self.is_op("||") || self.is_word("or") {
            self.next();
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.unary()?;
        while self.is_op("&&") || self.is_word("and") {
            self.next();
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.is_op("!") || self.is_word("not") {
            self.next();
            self.enter()?;
            let e = Expr::Not(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, ParseError> {
        let lhs = self.sum()?;
        let op = match self.peek() {
            Tok::Op("==") => Some(CmpOp::Eq),
            Tok::Op("!=") => Some(CmpOp::Ne),
            Tok::Op("<") => Some(CmpOp::Lt),
            Tok::Op("<=") => Some(CmpOp::Le),
            Tok::Op(">") => Some(CmpOp::Gt),
            Tok::Op(">=") => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.next();
            return Ok(Expr::Cmp(op, Box::new(lhs), Box::new(self.sum()?)));
        }
        let word = match self.peek() {
            Tok::Ident(w) => w.clone(),
            _ => return Ok(lhs),
        };
        let lhs = Box::new(lhs);
        match word.as_str() {
            "in" => {
                self.next();
                Ok(Expr::In(lhs, Box::new(self.set()?), false))
            }
            "not" => {
                self.next();
                if !self.is_word("in") {
                    return Err(self.error("expected `in` after `not`".into()));
                }
                self.next();
                Ok(Expr::In(lhs, Box::new(self.set()?), true))
            }
            "contains" | "startswith" | "endswith" => {
                self.next();
                let op = match word.as_str() {
                    "contains" => StrOp::Contains,
                    "startswith" => StrOp::StartsWith,
                    _ => StrOp::EndsWith,
                };
                Ok(Expr::StrOp(op, lhs, Box::new(self.sum()?)))
            }
            "matches" => {
                self.next();
                let pos = self.pos();
                match self.next() {
                    Tok::Str(s) => {
                        let re = regex::RegexBuilder::new(&s)
                            .size_limit(1 << 20)
                            .build()
                            .map_err(|e| ParseError {
                                pos,
                                msg: format!("bad regular expression: {e}"),
                                field: None,
                            })?;
                        Ok(Expr::Matches(lhs, Box::new(re)))
                    }
                    t => Err(ParseError {
                        pos,
                        msg: format!("`matches` takes a string, found {}", describe(&t)),
                        field: None,
                    }),
                }
            }
            _ => Ok(*lhs),
        }
    }

    fn set(&mut self) -> Result<Set, ParseError> {
        self.expect_op("[")?;
        let mut set = Set::default();
        while !self.is_op("]") {
            let pos = self.pos();
            match self.next() {
                Tok::Str(s) => {
                    if let Ok(net) = s.parse::<ipnet::IpNet>() {
                        set.nets.push(net);
                    } else if let Ok(ip) = s.parse::<std::net::IpAddr>() {
                        set.nets.push(ipnet::IpNet::from(ip));
                    }
                    set.strs.insert(s);
                }
                Tok::Int(i) => {
                    set.ints.insert(i);
                }
                t => {
                    return Err(ParseError {
                        pos,
                        msg: format!("a list holds strings and integers, found {}", describe(&t)),
                        field: None,
                    })
                }
            }
            if !self.is_op("]") {
                self.expect_op(",")?;
            }
        }
        self.next();
        Ok(set)
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.product()?;
        loop {
            let op = match self.peek() {
                Tok::Op("+") => ArithOp::Add,
                Tok::Op("-") => ArithOp::Sub,
                _ => return Ok(e),
            };
            self.next();
            e = Expr::Arith(op, Box::new(e), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.prim()?;
        loop {
            let op = match self.peek() {
                Tok::Op("*") => ArithOp::Mul,
                Tok::Op("/") => ArithOp::Div,
                Tok::Op("%") => ArithOp::Rem,
                _ => return Ok(e),
            };
            self.next();
            e = Expr::Arith(op, Box::new(e), Box::new(self.prim()?));
        }
    }

    fn prim(&mut self) -> Result<Expr, ParseError> {
        let pos = self.pos();
        match self.next() {
            Tok::Int(i) => Ok(Expr::Const(Const::Int(i))),
            Tok::Float(f) => Ok(Expr::Const(Const::Float(f))),
            Tok::Str(s) => Ok(Expr::Const(Const::Str(s))),
            Tok::Op("(") => {
                let e = self.expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Op("-") => {
                self.enter()?;
                let e = Expr::Neg(Box::new(self.prim()?));
                self.depth -= 1;
                Ok(e)
            }
            Tok::Ident(name) => self.ident(name, pos),
            t => Err(ParseError {
                pos,
                msg: format!("expected a value, found {}", describe(&t)),
                field: None,
            }),
        }
    }

    fn ident(&mut self, name: String, pos: usize) -> Result<Expr, ParseError> {
        match name.as_str() {
            "true" => return Ok(Expr::Const(Const::Bool(true))),
            "false" => return Ok(Expr::Const(Const::Bool(false))),
            "null" => return Ok(Expr::Const(Const::Null)),
            _ => {}
        }
        if self.is_op("(") {
            let Some(func) = Func::by_name(&name) else {
                return Err(ParseError {
                    pos,
                    msg: format!("unknown function `{name}`"),
                    field: None,
                });
            };
            self.next();
            let mut args = Vec::new();
            while !self.is_op(")") {
                args.push(self.expr()?);
                if !self.is_op(")") {
                    self.expect_op(",")?;
                }
            }
            self.next();
            return call(func, &name, args, pos);
        }
        match Field::by_name(&name) {
            Some(f) => Ok(Expr::Field(f)),
            None => Err(ParseError {
                pos,
                msg: format!("unknown field `{name}`"),
                field: Some(name),
            }),
        }
    }
}

fn const_str(e: &Expr) -> Option<&str> {
    match e {
        Expr::Const(Const::Str(s)) => Some(s),
        _ => None,
    }
}

/// Checks a call's arguments and folds the constant ones the function needs.
fn call(func: Func, name: &str, mut args: Vec<Expr>, pos: usize) -> Result<Expr, ParseError> {
    let err = |msg: String| ParseError {
        pos,
        msg,
        field: None,
    };
    let arity = |lo: usize, hi: usize, n: usize| {
        if n < lo || n > hi {
            Err(err(format!(
                "`{name}` takes {lo}..={hi} arguments, got {n}"
            )))
        } else {
            Ok(())
        }
    };
    match func {
        Func::Cidr => {
            if args.len() < 2 {
                return Err(err("`cidr` takes an address and at least one block".into()));
            }
            let mut set = Set::default();
            for a in &args[1..] {
                let s = const_str(a).ok_or_else(|| err("`cidr` blocks are strings".into()))?;
                let net = s
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| err(format!("`cidr`: {s:?} is not a CIDR block")))?;
                set.nets.push(net);
            }
            args.truncate(1);
            Ok(Expr::Cidr(Box::new(args.remove(0)), Box::new(set)))
        }
        Func::TcpFlag => {
            arity(2, 2, args.len())?;
            let bit = match const_str(&args[1]).map(str::to_ascii_uppercase).as_deref() {
                Some("FIN") => 0x01,
                Some("SYN") => 0x02,
                Some("RST") => 0x04,
                Some("PSH") => 0x08,
                Some("ACK") => 0x10,
                Some("URG") => 0x20,
                _ => {
                    return Err(err(
                        "`tcp_flag` flag is one of FIN SYN RST PSH ACK URG".into()
                    ))
                }
            };
            args.truncate(1);
            Ok(Expr::TcpFlag(Box::new(args.remove(0)), bit))
        }
        Func::Parent => {
            arity(1, 2, args.len())?;
            let n = match args.get(1) {
                None => 2,
                Some(Expr::Const(Const::Int(n))) if (1..=127).contains(n) => *n as usize,
                Some(_) => return Err(err("`parent`'s count is an integer 1..127".into())),
            };
            args.truncate(1);
            Ok(Expr::Parent(Box::new(args.remove(0)), n))
        }
        Func::Intel => intel_call(args, pos),
        Func::Len
        | Func::Lower
        | Func::Entropy
        | Func::Labels
        | Func::FirstLabel
        | Func::LongestLabel
        | Func::Exists
        | Func::Time
        | Func::Private
        | Func::Str
        | Func::Int => {
            arity(1, 1, args.len())?;
            Ok(Expr::Call(func, args))
        }
    }
}

/// `intel(x)` looks in the kinds the field can hold; `intel(x, "TYPE")` in that kind only.
fn intel_call(mut args: Vec<Expr>, pos: usize) -> Result<Expr, ParseError> {
    let err = |msg: String| ParseError {
        pos,
        msg,
        field: None,
    };
    if args.is_empty() || args.len() > 2 {
        return Err(err("`intel` takes a value and an optional type".into()));
    }
    let field = match &args[0] {
        Expr::Field(f) => Some(*f),
        _ => None,
    };
    let mask = match args.get(1) {
        Some(t) => {
            let s = const_str(t).ok_or_else(|| err("`intel`'s type is a string".into()))?;
            let k = Kind::parse(s)
                .ok_or_else(|| err(format!("`intel`: unknown indicator type {s:?}")))?;
            match k {
                Kind::Addr | Kind::Subnet => KindMask::ADDRS,
                k => KindMask::of(&[k]),
            }
        }
        None => field.map_or(KindMask::ALL, default_kinds),
    };
    args.truncate(1);
    let name = field.map_or("value", Field::name);
    Ok(Expr::Intel(Box::new(args.remove(0)), mask, name))
}

/// The indicator kinds a field's values can be.
fn default_kinds(f: Field) -> KindMask {
    use Field::*;
    match f {
        SrcIp | DestIp => KindMask::ADDRS,
        DnsAnswersRdata => KindMask(KindMask::ADDRS.0 | KindMask::of(&[Kind::Domain]).0),
        TlsSni | QuicSni | HttpHostname | DnsRrname | DnsAnswersRrname | TlsSubject
        | TlsIssuerDn => KindMask::of(&[Kind::Domain]),
        HttpUrl => KindMask::of(&[Kind::Url]),
        TlsJa3 | QuicJa3 => KindMask::of(&[Kind::Ja3]),
        TlsJa4 | QuicJa4 => KindMask::of(&[Kind::Ja4]),
        TlsFingerprint => KindMask::of(&[Kind::CertHash]),
        _ => KindMask::ALL,
    }
}
