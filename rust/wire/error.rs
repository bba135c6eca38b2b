use core::fmt;

/// Why bytes from the wire were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header or than a length field claims.
    Truncated,
    /// A field holds a value the format does not allow.
    Malformed,
    /// The checksum does not match.
    Checksum,
    /// Well formed, but a variant we do not handle.
    Unsupported,
}

pub type Result<T> = core::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated",
            Error::Malformed => "malformed",
            Error::Checksum => "bad checksum",
            Error::Unsupported => "unsupported",
        })
    }
}

impl std::error::Error for Error {}
