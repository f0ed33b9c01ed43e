//! The console's filter language: parse, render for both server dialects, and the completion
//! context at a fuzzer-chosen cursor. No input may panic; errors must point inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline_console::filter::{context, parse, to_sql};
use pipeline_console::schema::{Catalog, Dialect, FIELDS};

fuzz_target!(|data: &[u8]| {
    let Some((&cur, rest)) = data.split_first() else {
        return;
    };
    let s = String::from_utf8_lossy(rest);
    let mut cat = Catalog::default();
    for f in FIELDS {
        cat.flow_columns.insert(f.column.to_string());
    }
    match parse(&s, &cat) {
        Ok(Some(e)) => {
            for modern in [false, true] {
                let _ = to_sql(&e, Dialect { modern });
            }
        }
        Ok(None) => {}
        Err(e) => assert!(e.start <= e.end && e.end <= s.len()),
    }
    let c = context(&s, usize::from(cur), &cat);
    assert!(c.from <= c.to && c.to <= s.len());
});
