//! The config parser on arbitrary text: it must answer a config or errors, never panic, and stay
//! within its input budgets (no runaway memory or time on hostile YAML).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let env = |name: &str| (name == "SET").then(|| "value".to_owned());
        if let Err(errors) = vigil::config::parse(text, "fuzz.yaml", &env) {
            // Every error renders (positions, paths, did-you-mean).
            let _ = errors.to_string();
        }
    }
});
