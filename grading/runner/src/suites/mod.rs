//! Grading suites, one module per milestone.

pub mod m0;
