//! The deterministic cluster simulator. (Being written.)
