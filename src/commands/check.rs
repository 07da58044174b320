//! `vigil check --config FILE`: validate, print the monitors with their next fire times.

use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> ExitCode {
    match crate::config::load(path) {
        Ok(config) => {
            print!("{}", crate::config::report::table(&config, chrono::Utc::now()));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            let n = errors.0.len();
            eprintln!("{}: {n} error{}", path.display(), if n == 1 { "" } else { "s" });
            ExitCode::FAILURE
        }
    }
}
