//! The rule file loader (TOML, then every rule compiled) over arbitrary text: errors, never a
//! panic; each error renders as one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline_detect::RuleSet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match RuleSet::parse(std::path::Path::new("fuzz.toml"), text) {
        Ok(_) => {}
        Err(errors) => {
            for e in errors {
                let _ = e.to_string();
            }
        }
    }
});
