//! Every report.json a test reads is checked against docs/report.schema.json, and read as the
//! typed `rmapprof_report::Report`.

use serde_json::Value;
use std::{path::Path, sync::OnceLock};

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/report.schema.json");
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        jsonschema::validator_for(&schema).unwrap()
    })
}

/// `text` parsed, and valid: a report that is not panics with the schema's first complaints.
pub fn parse_report(text: &str, what: &Path) -> Value {
    let r: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{}: not whole JSON: {e}", what.display()));
    let errors: Vec<String> =
        validator().iter_errors(&r).take(5).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{} does not follow docs/report.schema.json: {errors:?}", what.display());
    // And it reads as the typed report `diff`, `model` and xtask read.
    if let Err(e) = serde_json::from_value::<rmapprof_report::Report>(r.clone()) {
        panic!("{}: not a rmapprof_report::Report: {e}", what.display());
    }
    r
}

/// A report a helper read (validated), as the typed report.
#[allow(dead_code)] // not every test binary reads one typed
pub fn typed(r: Value) -> rmapprof_report::Report {
    serde_json::from_value(r).unwrap()
}

/// report.json at `path`, read and validated, as the typed report.
#[allow(dead_code)] // not every test binary reads one typed
pub fn read_typed(path: &Path) -> rmapprof_report::Report {
    serde_json::from_value(read_report(path)).unwrap()
}

/// report.json at `path`, read, parsed and validated.
pub fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_report(&text, path)
}
