//! uniffi bindings for parti (work in progress).
