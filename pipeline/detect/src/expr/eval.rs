//! Evaluation of a parsed expression over one record.

use std::borrow::Cow;
use std::net::IpAddr;

use super::{ArithOp, CmpOp, Const, Expr, Func, Set, StrOp, Value};
use crate::intel::{Hit, IntelSet, Kind, KindMask};
use crate::record::{Field, Record};

/// Why an expression could not be evaluated on a record (counted per rule, never fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("type mismatch in {0}")]
    Type(&'static str),
    #[error("missing value in {0}")]
    Missing(&'static str),
    #[error("division by zero")]
    DivZero,
}

/// An intel match found while evaluating, with the field it was found in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IntelHit {
    pub field: &'static str,
    pub hit: Hit,
}

/// What an evaluation reads (the record and the intel set) and what it records (intel hits).
pub struct Env<'x> {
    pub rec: &'x Record<'x>,
    pub intel: &'x IntelSet,
    pub hits: Vec<IntelHit>,
}

impl<'x> Env<'x> {
    pub fn new(rec: &'x Record<'x>, intel: &'x IntelSet) -> Env<'x> {
        Env {
            rec,
            intel,
            hits: Vec::new(),
        }
    }
}

type R<'x> = Result<Value<'x>, EvalError>;

fn konst(c: &Const) -> Value<'_> {
    match c {
        Const::Null => Value::Null,
        Const::Bool(b) => Value::Bool(*b),
        Const::Int(i) => Value::Int(*i),
        Const::Float(f) => Value::Float(*f),
        Const::Str(s) => Value::str(s),
    }
}

/// Truth of a value in a boolean context: `null` is false, a list is true when any element is.
pub fn truthy(v: &Value) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        Value::List(l) => {
            for x in l {
                if truthy(x)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        _ => Err(EvalError::Type("a condition (not a boolean)")),
    }
}

impl Expr {
    /// Evaluates the expression as a condition. The same as `truthy(eval)`, with the
    /// connectives and the comparisons of a field with a literal (most of a rule's filter)
    /// answered without building the intermediate values.
    pub fn test<'x>(&'x self, env: &mut Env<'x>) -> Result<bool, EvalError> {
        match self {
            Expr::And(a, b) => Ok(a.test(env)? && b.test(env)?),
            Expr::Or(a, b) => Ok(a.test(env)? || b.test(env)?),
            Expr::Not(a) => Ok(!a.test(env)?),
            Expr::Cmp(op, a, b) => match (a.as_ref(), b.as_ref()) {
                (Expr::Field(f), Expr::Const(c)) => field_cmp(*op, &env.rec.get(*f), c),
                _ => truthy(&self.eval(env)?),
            },
            Expr::In(a, set, negated) => in_test(&a.eval(env)?, set, *negated),
            _ => truthy(&self.eval(env)?),
        }
    }

    pub fn eval<'x>(&'x self, env: &mut Env<'x>) -> R<'x> {
        match self {
            Expr::Const(c) => Ok(konst(c)),
            Expr::Field(f) => Ok(env.rec.get(*f)),
            Expr::Not(a) => Ok(Value::Bool(!a.test(env)?)),
            Expr::And(a, b) => Ok(Value::Bool(a.test(env)? && b.test(env)?)),
            Expr::Or(a, b) => Ok(Value::Bool(a.test(env)? || b.test(env)?)),
            Expr::Cmp(op, a, b) => {
                let (l, r) = (a.eval(env)?, b.eval(env)?);
                any(&l, &|x| compare(*op, x, &r)).map(Value::Bool)
            }
            Expr::Arith(op, a, b) => arith(*op, &a.eval(env)?, &b.eval(env)?),
            Expr::Neg(a) => match a.eval(env)? {
                Value::Int(i) => Ok(Value::Int(i.wrapping_neg())),
                Value::Float(f) => Ok(Value::Float(-f)),
                Value::Null => Err(EvalError::Missing("-")),
                _ => Err(EvalError::Type("-")),
            },
            Expr::In(a, set, negated) => in_test(&a.eval(env)?, set, *negated).map(Value::Bool),
            Expr::StrOp(op, a, b) => {
                let (l, r) = (a.eval(env)?, b.eval(env)?);
                let Value::Str(needle) = &r else {
                    return if r.is_null() {
                        Ok(Value::Bool(false))
                    } else {
                        Err(EvalError::Type("string operator"))
                    };
                };
                any(&l, &|x| str_op(*op, x, needle)).map(Value::Bool)
            }
            Expr::Matches(a, re) => {
                let v = a.eval(env)?;
                any(&v, &|x| match x {
                    Value::Str(s) => Ok(re.is_match(s)),
                    Value::Null => Ok(false),
                    _ => Err(EvalError::Type("matches")),
                })
                .map(Value::Bool)
            }
            Expr::Cidr(a, set) => {
                let v = a.eval(env)?;
                any(&v, &|x| match to_ip(x)? {
                    Some(ip) => Ok(set.nets.iter().any(|n| n.contains(&ip))),
                    None => Ok(false),
                })
                .map(Value::Bool)
            }
            Expr::TcpFlag(a, bit) => match a.eval(env)? {
                Value::Int(f) => Ok(Value::Bool(f & bit != 0)),
                Value::Null => Ok(Value::Bool(false)),
                _ => Err(EvalError::Type("tcp_flag")),
            },
            Expr::Parent(a, n) => {
                map_str(a.eval(env)?, "parent", &|s| Cow::Borrowed(parent(s, *n)))
            }
            Expr::Intel(a, mask, field) => intel(a, *mask, field, env),
            Expr::Call(f, args) => call(*f, args[0].eval(env)?),
        }
    }
}

/// `v in set` (`not in` when `negated`); `null` is in no set.
fn in_test(v: &Value, set: &Set, negated: bool) -> Result<bool, EvalError> {
    if v.is_null() {
        return Ok(negated);
    }
    let hit = any(v, &|x| Ok(in_set(x, set)))?;
    Ok(hit != negated)
}

/// `field OP literal`: integers and strings compared directly, anything else as `compare`
/// over the value (or each element of a list).
fn field_cmp(op: CmpOp, l: &Value, c: &Const) -> Result<bool, EvalError> {
    use std::cmp::Ordering;
    let ord: Ordering = match (l, c) {
        (Value::Int(a), Const::Int(b)) => a.cmp(b),
        (Value::Str(a), Const::Str(b)) => a.as_ref().cmp(b.as_str()),
        _ => return any(l, &|x| compare(op, x, &konst(c))),
    };
    Ok(match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    })
}

/// `pred` over a value, or over each element of a list until one holds.
fn any<'x>(
    v: &Value<'x>,
    pred: &dyn Fn(&Value<'x>) -> Result<bool, EvalError>,
) -> Result<bool, EvalError> {
    match v {
        Value::List(l) => {
            for x in l {
                if pred(x)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        v => pred(v),
    }
}

fn compare(op: CmpOp, l: &Value, r: &Value) -> Result<bool, EvalError> {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (l, r) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Str(a), Value::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Ip(a), Value::Ip(b)) => Some(a.cmp(b)),
        (Value::Ip(a), Value::Str(s)) => match s.parse::<IpAddr>() {
            Ok(b) => Some(a.cmp(&b)),
            Err(_) => return Ok(op == CmpOp::Ne),
        },
        (Value::Str(_), Value::Ip(_)) => return compare(flip(op), r, l),
        (a, b) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => return Err(EvalError::Type("comparison")),
        },
    };
    Ok(match ord {
        None => op == CmpOp::Ne,
        Some(o) => match op {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        },
    })
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        o => o,
    }
}

fn arith<'x>(op: ArithOp, l: &Value, r: &Value) -> R<'x> {
    if l.is_null() || r.is_null() {
        return Err(EvalError::Missing("arithmetic"));
    }
    if let (Value::Int(a), Value::Int(b)) = (l, r) {
        return Ok(Value::Int(match op {
            ArithOp::Add => a.wrapping_add(*b),
            ArithOp::Sub => a.wrapping_sub(*b),
            ArithOp::Mul => a.wrapping_mul(*b),
            ArithOp::Div => a.checked_div(*b).ok_or(EvalError::DivZero)?,
            ArithOp::Rem => a.checked_rem(*b).ok_or(EvalError::DivZero)?,
        }));
    }
    let (Some(a), Some(b)) = (l.as_f64(), r.as_f64()) else {
        return Err(EvalError::Type("arithmetic"));
    };
    Ok(Value::Float(match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div if b == 0.0 => return Err(EvalError::DivZero),
        ArithOp::Div => a / b,
        ArithOp::Rem if b == 0.0 => return Err(EvalError::DivZero),
        ArithOp::Rem => a % b,
    }))
}

fn in_set(v: &Value, set: &Set) -> bool {
    match v {
        Value::Str(s) => set.strs.contains(s.as_ref()),
        Value::Int(i) => set.ints.contains(i),
        Value::Ip(ip) => set.nets.iter().any(|n| n.contains(ip)),
        _ => false,
    }
}

fn str_op(op: StrOp, v: &Value, needle: &str) -> Result<bool, EvalError> {
    let Value::Str(s) = v else {
        return if v.is_null() {
            Ok(false)
        } else {
            Err(EvalError::Type("string operator"))
        };
    };
    Ok(match op {
        StrOp::Contains => s.contains(needle),
        StrOp::StartsWith => s.starts_with(needle),
        StrOp::EndsWith => s.ends_with(needle),
    })
}

fn to_ip(v: &Value) -> Result<Option<IpAddr>, EvalError> {
    match v {
        Value::Ip(ip) => Ok(Some(*ip)),
        Value::Str(s) => Ok(s.parse().ok()),
        Value::Null => Ok(None),
        _ => Err(EvalError::Type("address")),
    }
}

fn map_str<'x>(v: Value<'x>, what: &'static str, f: &dyn Fn(&str) -> Cow<'_, str>) -> R<'x> {
    match v {
        Value::Str(Cow::Borrowed(s)) => Ok(Value::Str(f(s))),
        Value::Str(Cow::Owned(s)) => Ok(Value::Str(Cow::Owned(f(&s).into_owned()))),
        Value::Null => Ok(Value::Null),
        Value::List(l) => Ok(Value::List(
            l.into_iter()
                .map(|x| map_str(x, what, f))
                .collect::<Result<_, _>>()?,
        )),
        _ => Err(EvalError::Type(what)),
    }
}

/// The last `n` labels of a name.
pub fn parent(s: &str, n: usize) -> &str {
    let s = s.trim_end_matches('.');
    let mut dots = 0;
    for (i, b) in s.bytes().enumerate().rev() {
        if b == b'.' {
            dots += 1;
            if dots == n {
                return &s[i + 1..];
            }
        }
    }
    s
}

/// Shannon entropy in bits per byte.
pub fn entropy(s: &str) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s = a.segments()[0];
            a.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

fn call(f: Func, v: Value<'_>) -> R<'_> {
    if f == Func::Exists {
        return Ok(Value::Bool(!v.is_null()));
    }
    if let Value::List(l) = v {
        if f == Func::Len {
            return Ok(Value::Int(l.len() as i64));
        }
        return Ok(Value::List(
            l.into_iter()
                .map(|x| call(f, x))
                .collect::<Result<_, _>>()?,
        ));
    }
    if v.is_null() {
        return Ok(Value::Null);
    }
    let name = match f {
        Func::Len => "len",
        Func::Lower => "lower",
        Func::Entropy => "entropy",
        Func::Labels => "labels",
        Func::FirstLabel => "first_label",
        Func::LongestLabel => "longest_label",
        Func::Time => "time",
        Func::Private => "private",
        Func::Str => "str",
        Func::Int => "int",
        _ => "function",
    };
    match (f, v) {
        (Func::Str, v) => {
            let mut s = String::new();
            v.render(&mut s);
            Ok(Value::Str(Cow::Owned(s)))
        }
        (Func::Int, Value::Int(i)) => Ok(Value::Int(i)),
        (Func::Int, Value::Float(x)) => Ok(Value::Int(x as i64)),
        (Func::Int, Value::Str(s)) => s
            .trim()
            .parse()
            .map(Value::Int)
            .map_err(|_| EvalError::Type("int")),
        (Func::Private, v) => Ok(to_ip(&v)?.map_or(Value::Null, |ip| Value::Bool(is_private(ip)))),
        (f, Value::Str(s)) => Ok(match f {
            Func::Len => Value::Int(s.chars().count() as i64),
            Func::Lower => Value::Str(Cow::Owned(s.to_lowercase())),
            Func::Entropy => Value::Float(entropy(&s)),
            Func::Labels => Value::Int(
                s.trim_end_matches('.')
                    .split('.')
                    .filter(|l| !l.is_empty())
                    .count() as i64,
            ),
            Func::FirstLabel => match s {
                Cow::Borrowed(b) => Value::str(b.split('.').next().unwrap_or("")),
                Cow::Owned(o) => {
                    Value::Str(Cow::Owned(o.split('.').next().unwrap_or("").to_string()))
                }
            },
            Func::LongestLabel => {
                let pick = |x: &str| {
                    x.split('.').fold(0..0, |best, l| {
                        let start = l.as_ptr() as usize - x.as_ptr() as usize;
                        if l.len() > best.len() {
                            start..start + l.len()
                        } else {
                            best
                        }
                    })
                };
                match s {
                    Cow::Borrowed(b) => Value::str(&b[pick(b)]),
                    Cow::Owned(o) => Value::Str(Cow::Owned(o[pick(&o)].to_string())),
                }
            }
            Func::Time => crate::time::parse(&s)
                .map_or(Value::Null, |t| Value::Int(t / crate::time::MICROS_PER_SEC)),
            _ => return Err(EvalError::Type(name)),
        }),
        _ => Err(EvalError::Type(name)),
    }
}

fn intel<'x>(a: &'x Expr, mask: KindMask, field: &'static str, env: &mut Env<'x>) -> R<'x> {
    if env.intel.is_empty() {
        return Ok(Value::Bool(false));
    }
    let v = a.eval(env)?;
    let mut found = None;
    let mut look = |x: &Value| -> Result<bool, EvalError> {
        let h = match x {
            Value::Ip(ip) if mask.has(Kind::Addr) || mask.has(Kind::Subnet) => {
                env.intel.lookup_ip(*ip)
            }
            Value::Ip(_) | Value::Null => None,
            Value::Str(s) if field == Field::HttpUrl.name() => url_lookup(env, s),
            Value::Str(s) => env.intel.lookup_str(mask, s),
            _ => return Err(EvalError::Type("intel")),
        };
        let hit = h.is_some();
        if found.is_none() {
            found = h;
        }
        Ok(hit)
    };
    let hit = match &v {
        Value::List(l) => {
            let mut any_hit = false;
            for x in l {
                any_hit |= look(x)?;
            }
            any_hit
        }
        x => look(x)?,
    };
    if let Some(hit) = found {
        env.hits.push(IntelHit { field, hit });
    }
    Ok(Value::Bool(hit))
}

/// A URL indicator is `host/path`: the request's host (without port) and URL, with and
/// without its query string.
fn url_lookup(env: &Env, url: &str) -> Option<Hit> {
    let host = env.rec.http.as_ref()?.hostname.as_deref()?;
    let host = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let full = format!("{host}{url}");
    let mask = KindMask::of(&[Kind::Url]);
    env.intel.lookup_str(mask, &full).or_else(|| {
        let (path, _) = full.split_once('?')?;
        env.intel.lookup_str(mask, path)
    })
}
