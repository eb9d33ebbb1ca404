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

/// `text` parsed, valid, and read as the typed report `diff`, `model` and xtask read: a report
/// that is not panics with the schema's first complaints.
pub fn parse_report(text: &str, what: &Path) -> rmapprof_report::Report {
    let r: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{}: not whole JSON: {e}", what.display()));
    let errors: Vec<String> =
        validator().iter_errors(&r).take(5).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{} does not follow docs/report.schema.json: {errors:?}", what.display());
    serde_json::from_value(r)
        .unwrap_or_else(|e| panic!("{}: not a rmapprof_report::Report: {e}", what.display()))
}

/// report.json at `path`, read, parsed and validated.
pub fn read_report(path: &Path) -> rmapprof_report::Report {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_report(&text, path)
}
