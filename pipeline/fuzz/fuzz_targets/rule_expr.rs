//! The rule expression parser over arbitrary text, then every parsed expression evaluated over
//! a fixed record: never a panic, never unbounded recursion.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline_detect::expr::{self, Env};
use pipeline_detect::{IntelSet, Record};

const REC: &str = r#"{"timestamp":"2024-01-01T00:00:00Z","flow_id":1,"event_type":"dns","src_ip":"192.0.2.1","dest_ip":"192.0.2.53","dest_port":53,"dns":{"type":"answer","rrname":"a.b.example","rcode":"NXDOMAIN","answers":[{"rrname":"a","rrtype":"A","rdata":"192.0.2.9"}]},"http":{"hostname":"h:80","url":"/x","status":200}}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(e) = expr::parse(text) {
        let rec = Record::parse(REC).expect("fixed record");
        let intel = IntelSet::default();
        let mut env = Env::new(&rec, &intel);
        let _ = e.eval(&mut env);
    }
});
