//! persys node agent.

pub mod report;
pub mod runtime;
pub mod state;
pub mod supervisor;
