#![recursion_limit = "256"]
//! The ZooKeeperCluster operator. Pure parts compute: `resources` (the desired objects), `status`
//! (status and conditions), `planner` (the next safe day-2 step). Thin parts act: `controller`
//! (observe, apply, execute, report) and `ensemble` (ZooKeeper's own configuration).

pub mod controller;
pub mod ensemble;
pub mod planner;
pub mod resources;
pub mod status;
