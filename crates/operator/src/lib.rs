#![recursion_limit = "256"]
//! The ZooKeeperCluster operator.
//!
//! A reconcile is a pipeline, one module a stage: `observe` (read the cluster's objects and the
//! ensemble), `resources` (the desired objects, pure), `apply`, `planner` (the next safe day-2
//! step, pure), `execute`, `report` (status from `status`, pure, and events). `controller` wires
//! the watches to the pipeline; `applied` remembers what was written, so an unchanged
//! object is not written again; `ensemble` talks to ZooKeeper; `leader` elects one acting
//! replica; `metrics` serves `/metrics` and health.

pub mod applied;
pub mod apply;
pub mod backups;
pub mod controller;
pub mod ensemble;
pub mod error;
pub mod events;
pub mod execute;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod pki;
pub mod planner;
pub mod references;
pub mod report;
pub mod resources;
pub mod status;
pub mod tls;
