//! The one error type of the image tool; each message names the file, reference or request at fault.

use std::path::PathBuf;

/// What can go wrong while building, reading or pushing an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The input is not a WebAssembly binary module.
    #[error("{}: not a WebAssembly module (a module starts with the bytes \\0asm)", path.display())]
    NotWasm {
        /// The file given as the module.
        path: PathBuf,
    },
    /// An on-disk OCI image layout is missing a part or is inconsistent.
    #[error("{}: {reason}", path.display())]
    Layout {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An image reference such as `127.0.0.1:5000/meshward/jwt-auth:0.1.0` could not be used.
    #[error("reference {reference:?}: {reason}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A registry refused a request or could not be reached.
    #[error("{method} {url}: {reason}")]
    Registry {
        /// The HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// The status and body the registry answered with, or the transport error.
        reason: String,
    },
    /// JSON could not be produced (the image's own structures always serialise, so this is a bug).
    #[error("serialising {what}: {source}")]
    Json {
        /// The document being written.
        what: &'static str,
        /// The serialiser's error.
        source: serde_json::Error,
    },
    /// An OCI structure could not be built (every field is set here, so this is a bug).
    #[error("building the {what}: {source}")]
    Spec {
        /// The structure being built.
        what: &'static str,
        /// oci-spec's error.
        source: oci_spec::OciSpecError,
    },
    /// The command line could not be understood.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// The tool's result type.
pub type Result<T> = std::result::Result<T, Error>;
