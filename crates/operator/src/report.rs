//! Report: status and events. Which events a reconcile publishes is decided here, purely, from
//! the status before and after; writing is the last stage of the pipeline. A failed reconcile
//! also reports: a `Reconciled=False` condition naming the stage and object, and a Warning.

use crate::controller::{Context, MANAGER};
use crate::error::{At, Error, Stage};
use crate::events::EventType;
use crate::resources::Names;
use crate::status::{self, AVAILABLE, DEGRADED};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use zkop_api::{ZooKeeperCluster, ZooKeeperClusterStatus};

/// What this reconcile changed, besides what status shows.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub created: bool,
    pub configuration_changed: bool,
    pub bootstrapped: bool,
}

/// The events a reconcile publishes: transitions between the previous status and the new one.
pub fn events(
    zk: &ZooKeeperCluster,
    after: &ZooKeeperClusterStatus,
    changes: &Changes,
) -> Vec<(EventType, &'static str, String)> {
    let before = zk.status.as_ref();
    let mut events = Vec::new();
    if changes.created {
        events.push((
            EventType::Normal,
            "Creating",
            format!("creating an ensemble of {} members", zk.spec.replicas),
        ));
    }
    if changes.configuration_changed {
        events.push((
            EventType::Normal,
            "TemplateChanged",
            "the members' configuration, version, JVM options or restart request changed: restarting members one at a time".into(),
        ));
    }
    if changes.bootstrapped {
        events.push((
            EventType::Normal,
            "Bootstrapped",
            "the ensemble exists: from now on an empty member must sync before it votes".into(),
        ));
    }
    let before_last = before.and_then(|s| s.last_operation.as_ref());
    if let Some(ended) = after.last_operation.as_ref().filter(|l| Some(*l) != before_last) {
        let succeeded = ended.outcome == "Succeeded";
        events.push((
            if succeeded {
                EventType::Normal
            } else {
                EventType::Warning
            },
            "OperationCompleted",
            format!("{}: {}", ended.kind, ended.outcome),
        ));
    }
    let before_operation = before.and_then(|s| s.operation.clone());
    if after.operation != before_operation {
        if let Some(operation) = &after.operation {
            let step = after.operation_step.clone().unwrap_or_default();
            events.push((EventType::Normal, "OperationStarted", format!("{operation}: {step}")));
        }
    }
    let was_available = status::condition_is_true(before, AVAILABLE);
    let is_available = status::condition_is_true(Some(after), AVAILABLE);
    if is_available && !was_available {
        events.push((
            EventType::Normal,
            "Available",
            format!("quorum served, leader {}", after.leader.as_deref().unwrap_or("?")),
        ));
    }
    if was_available && !is_available {
        events.push((
            EventType::Warning,
            "QuorumLost",
            "fewer than a quorum of members serve".into(),
        ));
    }
    let was_stuck = status::condition_reason(before, DEGRADED) == Some("MemberStuck");
    let is_stuck = status::condition_reason(Some(after), DEGRADED) == Some("MemberStuck");
    if is_stuck && !was_stuck {
        let message = after
            .conditions
            .iter()
            .find(|c| c.type_ == DEGRADED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        events.push((EventType::Warning, "MemberStuck", message));
    }
    if was_stuck && !is_stuck {
        events.push((
            EventType::Normal,
            "MemberRecovered",
            "every member that was stuck serves again or is being replaced".into(),
        ));
    }
    events
}

pub async fn write_status(ctx: &Context, names: &Names, status: &ZooKeeperClusterStatus) -> Result<(), Error> {
    let clusters: Api<ZooKeeperCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let patch = serde_json::json!({
        "apiVersion": ZooKeeperCluster::api_version(&()),
        "kind": ZooKeeperCluster::kind(&()),
        "status": status,
    });
    clusters
        .patch_status(
            &names.cluster,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .at(
            Stage::Status,
            format!("ZooKeeperCluster {}/{} status", names.namespace, names.cluster),
        )?;
    Ok(())
}

/// A failed reconcile: `Reconciled=False` naming the stage and object, and a Warning event.
pub async fn failure(ctx: &Context, zk: &ZooKeeperCluster, error: &Error) {
    let reason = error.reason();
    let message = error.to_string();
    ctx.publish(zk, EventType::Warning, reason, message.clone()).await;
    let status = status::failed(zk, reason, message, Time(Timestamp::now()));
    if error.stage() != Stage::Status {
        if let Err(status_error) = write_status(ctx, &Names::of(zk), &status).await {
            tracing::warn!(%status_error, "could not record the failure in status");
        }
    }
}

/// A resource whose spec cannot be decoded: a Warning event and a condition, nothing else.
pub async fn undecodable(ctx: &Context, object: &DynamicObject, message: &str) {
    let resource = ApiResource::erase::<ZooKeeperCluster>(&());
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let note =
        format!("ZooKeeperCluster {namespace}/{name} cannot be read, so it is left alone: {message}; fix the resource");
    tracing::warn!(cluster = %name, %namespace, "{note}");
    ctx.publish_for(
        &object.object_ref(&resource),
        EventType::Warning,
        "InvalidResource",
        note.clone(),
    )
    .await;
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &resource);
    let condition = serde_json::json!({
        "type": status::RECONCILED, "status": "False", "reason": Stage::Decode.failure_reason(),
        "message": note, "lastTransitionTime": Timestamp::now().to_string(),
    });
    let patch = serde_json::json!({"status": {"conditions": [condition], "message": note}});
    if let Err(error) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(%error, cluster = %name, "could not record the decoding failure in status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn condition(kind: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: kind.into(),
            status: status.into(),
            reason: reason.into(),
            message: "m".into(),
            observed_generation: None,
            last_transition_time: Time(Timestamp::from_second(0).unwrap()),
        }
    }

    fn reasons(events: &[(EventType, &'static str, String)]) -> Vec<&'static str> {
        events.iter().map(|e| e.1).collect()
    }

    #[test]
    fn operations_and_stuck_members_are_announced_once_at_each_end() {
        let mut zk = ZooKeeperCluster::new("zk", serde_json::from_value(serde_json::json!({})).unwrap());
        zk.status = Some(ZooKeeperClusterStatus {
            conditions: vec![condition(AVAILABLE, "True", "QuorumServing")],
            ..Default::default()
        });
        let rolling = ZooKeeperClusterStatus {
            operation: Some("RollingRestart".into()),
            conditions: vec![
                condition(AVAILABLE, "True", "QuorumServing"),
                condition(DEGRADED, "True", "MemberStuck"),
            ],
            ..Default::default()
        };
        let events = events(&zk, &rolling, &Changes::default());
        assert_eq!(reasons(&events), vec!["OperationStarted", "MemberStuck"]);
        assert_eq!(events[1].0, EventType::Warning);
        zk.status = Some(rolling.clone());
        assert!(
            super::events(&zk, &rolling, &Changes::default()).is_empty(),
            "nothing new, nothing said"
        );
        let done = ZooKeeperClusterStatus {
            conditions: vec![condition(AVAILABLE, "False", "NoQuorum")],
            last_operation: Some(zkop_api::LastOperation {
                kind: "RollingRestart".into(),
                outcome: "ended with members not serving: zk-1 (not serving)".into(),
                finished_at: "2026-11-29T12:00:00Z".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            reasons(&super::events(&zk, &done, &Changes::default())),
            vec!["OperationCompleted", "QuorumLost", "MemberRecovered"]
        );
        assert_eq!(
            super::events(&zk, &done, &Changes::default())[0].0,
            EventType::Warning,
            "an operation that ended with members down is a warning"
        );
    }
}
