//! persys cluster PKI.
