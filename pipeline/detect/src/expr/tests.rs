use super::*;
use crate::intel::IntelSet;
use crate::record::Record;

const HTTP: &str = r#"{"timestamp":"2024-01-01T00:00:10.000000+0000","flow_id":9,"event_index":1,"event_type":"http","src_ip":"10.1.2.3","src_port":40000,"dest_ip":"198.51.100.7","dest_port":8080,"proto":"TCP","app_proto":"http","http":{"hostname":"www.Example.com:8080","url":"/a?b=1","http_method":"GET","http_user_agent":"sqlmap/1.7","status":404}}"#;
const DNS: &str = r#"{"timestamp":"2024-01-01T00:00:00Z","flow_id":1,"event_type":"dns","src_ip":"192.0.2.1","dest_ip":"192.0.2.53","dns":{"type":"answer","rrname":"aGVsbG8gd29ybGQgdGhpcyBpcyBhIHR1bm5lbA.t.tunnel.example","rcode":"NOERROR","answers":[{"rrname":"x","rrtype":"A","rdata":"203.0.113.9"},{"rrname":"x","rrtype":"A","rdata":"198.51.100.1"}]}}"#;

fn eval(src: &str, line: &str) -> Result<Value<'static>, EvalError> {
    let e = parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let rec = Record::parse(line).unwrap();
    let intel = IntelSet::default();
    let mut env = Env::new(&rec, &intel);
    let v = e.eval(&mut env)?;
    // Detach from the borrowed record for the assertion.
    Ok(match v {
        Value::Str(s) => Value::Str(std::borrow::Cow::Owned(s.into_owned())),
        Value::Null => Value::Null,
        Value::Bool(b) => Value::Bool(b),
        Value::Int(i) => Value::Int(i),
        Value::Float(f) => Value::Float(f),
        Value::Ip(ip) => Value::Ip(ip),
        Value::List(l) => Value::Int(l.len() as i64),
    })
}

fn truth(src: &str, line: &str) -> bool {
    match eval(src, line) {
        Ok(Value::Bool(b)) => b,
        other => panic!("{src}: {other:?}"),
    }
}

#[test]
fn comparisons_strings_sets_and_regex() {
    assert!(truth(
        r#"event_type == "http" && dest_port >= 8000 and dest_port < 9000"#,
        HTTP
    ));
    assert!(truth(
        r#"http.http_method in ["GET", "HEAD"] && dest_port not in [80, 443]"#,
        HTTP
    ));
    assert!(truth(
        r#"http.http_user_agent matches "(?i)^SQLMAP/" "#,
        HTTP
    ));
    assert!(truth(
        r#"http.url startswith "/a" && http.url contains "b=" && !(http.url endswith "x")"#,
        HTTP
    ));
    assert!(truth(
        r#"src_ip in ["10.0.0.0/8"] && src_ip == "10.1.2.3" && private(src_ip) && !private(dest_ip)"#,
        HTTP
    ));
    assert!(truth(
        r#"cidr(dest_ip, "198.51.100.0/24", "2001:db8::/32")"#,
        HTTP
    ));
    assert!(truth(
        "http.status == 404 && http.status * 2 + 1 == 809 && -http.status < 0",
        HTTP
    ));
    assert!(truth(
        r#"lower(http.hostname) == "www.example.com:8080""#,
        HTTP
    ));
    assert!(truth("ts == 1704067210 && time(timestamp) == ts", HTTP));
}

#[test]
fn missing_fields_are_null_and_false() {
    assert!(!truth(r#"dns.rrname == "x""#, HTTP));
    assert!(truth(r#"dns.rrname != "x""#, HTTP));
    assert!(!truth(
        r#"dns.rrname contains "x" || dns.rrname matches "x" || dns.rrname in ["x"]"#,
        HTTP
    ));
    assert!(truth("!exists(dns.rrname) && exists(http.url)", HTTP));
    assert_eq!(eval("len(dns.rrname)", HTTP), Ok(Value::Null));
}

#[test]
fn type_mismatches_and_arithmetic_on_missing_values_are_errors() {
    assert_eq!(
        eval(r#"http.url > 5"#, HTTP),
        Err(EvalError::Type("comparison"))
    );
    assert_eq!(eval("len(dest_port)", HTTP), Err(EvalError::Type("len")));
    assert_eq!(
        eval("http.length + 1", HTTP),
        Err(EvalError::Missing("arithmetic"))
    );
    assert_eq!(eval("dest_port / 0", HTTP), Err(EvalError::DivZero));
    assert_eq!(
        eval("dest_port && true", HTTP),
        Err(EvalError::Type("a condition (not a boolean)"))
    );
}

#[test]
fn dns_names_and_lists() {
    assert!(truth(
        r#"parent(dns.rrname, 2) == "tunnel.example" && parent(dns.rrname) == "tunnel.example""#,
        DNS
    ));
    assert!(truth(
        "labels(dns.rrname) == 4 && len(first_label(dns.rrname)) == 38",
        DNS
    ));
    assert!(truth(
        "len(longest_label(dns.rrname)) == 38 && entropy(longest_label(dns.rrname)) > 4.0",
        DNS
    ));
    assert!(
        truth(r#"dns.answers.rdata == "198.51.100.1""#, DNS),
        "any element"
    );
    assert!(truth(r#"cidr(dns.answers.rdata, "203.0.113.0/24")"#, DNS));
    assert_eq!(eval("len(dns.answers.rdata)", DNS), Ok(Value::Int(2)));
    assert!((crate::expr::eval::entropy("aaaa") - 0.0).abs() < 1e-9);
    assert!((crate::expr::eval::entropy("abcd") - 2.0).abs() < 1e-9);
}

#[test]
fn parse_errors_say_where_and_name_unknown_fields() {
    let e = parse("dns.rrnam == \"x\"").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("dns.rrnam"));
    assert_eq!(e.pos, 0);
    for bad in [
        "",
        "(",
        "a ==",
        "dest_port ==",
        "\"open",
        "nosuch(1)",
        "len()",
        "cidr(src_ip, \"x\")",
        "tcp_flag(tcp.tcp_flags, \"BOGUS\")",
        "src_ip matches 5",
        "src_ip matches \"(\"",
        "[1]",
        "dest_port in [1.5]",
        "intel(src_ip, \"EMAIL\")",
        "parent(dns.rrname, 0)",
        "1 2",
        "§",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
    let deep = "(".repeat(100) + "true" + &")".repeat(100);
    assert!(parse(&deep).unwrap_err().msg.contains("nested"));
    let nots = "!".repeat(1000) + "true";
    assert!(parse(&nots).is_err());
}

#[test]
fn intel_records_what_matched() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("i.txt");
    std::fs::write(&p, "#type DOMAIN\ntunnel.example\n").unwrap();
    let intel = IntelSet::load(&[p.display().to_string()]).unwrap();
    let rec = Record::parse(DNS).unwrap();
    let e = parse("intel(dns.rrname) && !intel(dns.answers.rdata)").unwrap();
    let mut env = Env::new(&rec, &intel);
    assert_eq!(e.test(&mut env), Ok(true));
    assert_eq!(env.hits.len(), 1);
    assert_eq!(env.hits[0].field, "dns.rrname");
    assert_eq!(env.hits[0].hit.indicator, "tunnel.example");
}

#[test]
fn addresses_render_as_their_display() {
    for a in [
        "0.0.0.0",
        "9.10.99.100",
        "255.255.255.255",
        "192.0.2.1",
        "2001:db8::1",
    ] {
        let ip: std::net::IpAddr = a.parse().unwrap();
        let mut s = String::new();
        Value::Ip(ip).render(&mut s);
        assert_eq!(s, ip.to_string());
    }
}

#[test]
fn the_event_type_guard_is_dropped_only_at_the_head_of_a_conjunction() {
    let fields = |src: &str| {
        let mut f = Vec::new();
        parse(src)
            .unwrap()
            .without_event_type_guard()
            .fields(&mut f);
        f
    };
    let f = fields(r#"event_type == "flow" && dest_port == 22 && proto == "TCP""#);
    assert_eq!(f, vec![Field::DestPort, Field::Proto]);
    let either =
        r#"(event_type == "tls" && tls.sni == "a") || (event_type == "quic" && quic.sni == "a")"#;
    assert!(fields(either).contains(&Field::EventType));
    assert_eq!(fields(r#"event_type == "dns""#), vec![Field::EventType]);
}
