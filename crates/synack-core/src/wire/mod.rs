//! Wire formats: zero-copy packet views and validated `Repr` structs.
