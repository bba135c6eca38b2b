//! `FileClaim`: the engine's claim on a file (`phy/file_claim.rs`) for the
//! Python side's own claims (the lab demo's, one per machine).

use crate::phy::file_claim::{Claimed, FileClaim};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Mutex;

/// An exclusive claim on `path`, held until `release()` or until this
/// process ends. `taken` says another open file holds it (`holder`: its
/// pid, if it wrote one); a file that cannot be used at all claims nothing
/// and refuses nothing.
#[pyclass(name = "FileClaim", module = "mipfast._native", frozen)]
pub struct PyFileClaim {
    claim: Mutex<Option<FileClaim>>,
    taken: bool,
    holder: Option<u32>,
}

#[pymethods]
impl PyFileClaim {
    #[new]
    fn new(path: PathBuf) -> Self {
        let (claim, taken, holder) = match FileClaim::take(&path) {
            Ok(Claimed::Ours(claim)) => (Some(claim), false, None),
            Ok(Claimed::Theirs(holder)) => (None, true, holder),
            Err(e) => {
                log::debug!("no claim on {}: {e}", path.display());
                (None, false, None)
            }
        };
        PyFileClaim {
            claim: Mutex::new(claim),
            taken,
            holder,
        }
    }

    #[getter]
    fn taken(&self) -> bool {
        self.taken
    }

    #[getter]
    fn holder(&self) -> Option<u32> {
        self.holder
    }

    /// Lets go of the claim (removing its file); nothing if not held.
    fn release(&self) {
        drop(self.claim.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}
