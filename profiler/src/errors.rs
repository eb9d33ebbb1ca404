//! The errors that decide rmapprof's exit status; any other error exits 1.

/// An error in what the user asked for (exit 2), as opposed to one in running it (exit 1).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::anyhow!(UsageError(msg.into()))
}

/// An error that carries its own exit status (127: COMMAND not found, as a shell says).
#[derive(Debug)]
pub struct Exit(pub u8, pub String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}

/// The exit status an error ends rmapprof with.
pub fn exit_status(e: &anyhow::Error) -> u8 {
    if let Some(code) = e.downcast_ref::<Exit>() {
        return code.0;
    }
    if e.downcast_ref::<UsageError>().is_some() {
        2
    } else {
        1
    }
}
