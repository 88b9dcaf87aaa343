//! persys scheduler.
