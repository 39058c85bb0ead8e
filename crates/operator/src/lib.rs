#![recursion_limit = "256"]
//! The ZooKeeperCluster operator: `resources` and `status` compute the desired state and the
//! status from observations (pure); `controller` observes, applies and reports.

pub mod controller;
pub mod planner;
pub mod resources;
pub mod status;
