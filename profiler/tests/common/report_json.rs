//! Every report.json a test reads is checked against docs/report.schema.json first.

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
    r
}

/// report.json at `path`, read, parsed and validated.
pub fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_report(&text, path)
}
