//! The CNI protocol edge of the `sriov` plugin: environment, versions and
//! the error contract (JSON on stdout, non-zero exit).
//!
//! Only VERSION is served so far; ADD/DEL/CHECK/STATUS/GC answer a CNI
//! error saying so (issue 5 builds them).

pub mod error;
pub mod version;

pub use error::CniError;

use std::io::Read;

/// Run one CNI invocation: returns what to print on stdout.
pub fn run_from_env(stdin: &mut dyn Read) -> Result<String, CniError> {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    match command.as_str() {
        "VERSION" => {
            let mut input = String::new();
            stdin
                .read_to_string(&mut input)
                .map_err(|e| CniError::io("reading stdin", e))?;
            version::answer(&input)
        }
        "ADD" | "DEL" | "CHECK" | "STATUS" | "GC" => Err(CniError::new(
            error::CODE_PLUGIN_UNIMPLEMENTED,
            format!("CNI command {command} is not implemented yet"),
        )),
        "" => Err(CniError::new(
            error::CODE_INVALID_ENV,
            "CNI_COMMAND is not set",
        )),
        other => Err(CniError::new(
            error::CODE_INVALID_ENV,
            format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
        )),
    }
}
