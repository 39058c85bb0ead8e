//! End-to-end tests live in tests/; they need a cluster (make e2e).
