//! persys agent.
