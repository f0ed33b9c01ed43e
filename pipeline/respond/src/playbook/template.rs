//! Notification bodies: JSON whose strings hold `{{ path }}` placeholders, filled from the
//! alert (`{{ alert.signature }}`, `{{ src_ip }}`) and a few names of the run (`{{ playbook }}`,
//! `{{ sensor }}`, `{{ alert_id }}`).
//!
//! Hand-written rather than a template engine: a placeholder is only a field path (no loops,
//! filters or logic in a file that decides what leaves the network), and filling the strings
//! of parsed JSON, never pasting text into JSON, keeps the body valid JSON whatever an alert
//! holds. Values are inserted as text (a number as its digits, an object as its JSON; what
//! webhook formats expect in their strings), a missing field as nothing, each cut to
//! [`MAX_VALUE_CHARS`].

use serde_json::Value;

/// Longest text one placeholder inserts.
pub const MAX_VALUE_CHARS: usize = 2048;

/// A placeholder's path: dotted parts of letters, digits and `_`.
fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// The pieces of a template string: literal text and placeholder paths.
enum Piece<'a> {
    Text(&'a str),
    Field(&'a str),
}

fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        if i > 0 {
            out.push(Piece::Text(&rest[..i]));
        }
        let after = &rest[i + 2..];
        let j = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {s:?}"))?;
        let path = after[..j].trim();
        if !valid_path(path) {
            return Err(format!(
                "placeholder {{{{{}}}}} is not a field path",
                &after[..j]
            ));
        }
        out.push(Piece::Field(path));
        rest = &after[j + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// Checks every string of a body template.
pub fn check(body: &Value) -> Result<(), String> {
    match body {
        Value::String(s) => pieces(s).map(|_| ()),
        Value::Array(a) => a.iter().try_for_each(check),
        Value::Object(m) => m.values().try_for_each(check),
        _ => Ok(()),
    }
}

/// A value as inserted into text.
fn text(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match s.char_indices().nth(MAX_VALUE_CHARS) {
        Some((i, _)) => s[..i].to_string(),
        None => s,
    }
}

/// Fills `body` with values from `lookup` (missing fields give `""`).
pub fn render(body: &Value, lookup: &dyn Fn(&str) -> Option<Value>) -> Value {
    match body {
        Value::String(s) => {
            let Ok(ps) = pieces(s) else {
                return body.clone();
            };
            let mut out = String::new();
            for p in ps {
                match p {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Field(f) => {
                        out.push_str(&lookup(f).map(|v| text(&v)).unwrap_or_default())
                    }
                }
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| render(v, lookup)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), render(v, lookup)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_are_filled_inside_json_strings_as_text() {
        let body = json!({"text": "{{ alert.signature }} from {{src_ip}} \"quoted\"", "sev": "{{ alert.severity }}", "none": "{{ nope }}", "list": ["{{ src_ip }}"]});
        check(&body).unwrap();
        let alert =
            json!({"src_ip": "10.0.0.1", "alert": {"signature": "A \"b\"\n", "severity": 2}});
        let lookup = |p: &str| {
            let mut v = &alert;
            for part in p.split('.') {
                v = v.get(part)?;
            }
            Some(v.clone())
        };
        let out = render(&body, &lookup);
        assert_eq!(out["text"], "A \"b\"\n from 10.0.0.1 \"quoted\"");
        assert_eq!(out["sev"], "2");
        assert_eq!(out["none"], "");
        assert_eq!(out["list"][0], "10.0.0.1");
        // The result is JSON whatever the alert held.
        serde_json::from_str::<Value>(&out.to_string()).unwrap();
    }

    #[test]
    fn bad_placeholders_are_errors() {
        for bad in [
            "{{ src_ip",
            "{{ }}",
            "{{ a b }}",
            "{{ a..b }}",
            "x {{ $x }}",
        ] {
            assert!(check(&json!({ "t": bad })).is_err(), "{bad}");
        }
        assert!(check(&json!({"t": "no placeholders { } }}"})).is_ok());
    }

    #[test]
    fn long_values_are_cut() {
        let long = "é".repeat(MAX_VALUE_CHARS + 10);
        let out = render(&json!("x{{ v }}"), &|_: &str| {
            Some(Value::String(long.clone()))
        });
        assert_eq!(out.as_str().unwrap().chars().count(), MAX_VALUE_CHARS + 1);
    }
}
