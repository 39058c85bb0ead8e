//! Events (`events.k8s.io/v1`). Repeats of the same event (same object, type, reason and note)
//! within a while are counted on one Event as a series, as the kubelet does; an event with a
//! different note is a new Event. (kube-rs's Recorder keys its series without the note, so a
//! second "MemberStuck" about another member would show the first member's note.)

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub use kube::runtime::events::EventType;

/// How long a repeat joins the earlier Event's series.
const SERIES_WINDOW: Duration = Duration::from_secs(10 * 60);
/// The API server's limit on an event's note.
const MAX_NOTE: usize = 1024;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    regarding: String,
    type_: &'static str,
    reason: String,
    note: String,
}

struct Published {
    namespace: String,
    name: String,
    count: i32,
    first: Instant,
}

pub struct Publisher {
    client: kube::Client,
    controller: String,
    instance: String,
    published: Mutex<HashMap<Key, Published>>,
}

impl Publisher {
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Publisher {
        Publisher {
            client,
            controller: controller.into(),
            instance: instance.into(),
            published: Mutex::default(),
        }
    }

    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let type_ = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let note: String = note.chars().take(MAX_NOTE).collect();
        let key = Key {
            regarding: regarding.uid.clone().unwrap_or_default(),
            type_,
            reason: reason.into(),
            note: note.clone(),
        };
        let now = MicroTime(Timestamp::now());
        let mut published = self.published.lock().await;
        published.retain(|_, p| p.first.elapsed() < SERIES_WINDOW);
        if let Some(earlier) = published.get_mut(&key) {
            earlier.count += 1;
            let events: Api<Event> = Api::namespaced(self.client.clone(), &earlier.namespace);
            let series = serde_json::json!({"series": EventSeries { count: earlier.count, last_observed_time: now }});
            events
                .patch(&earlier.name, &PatchParams::default(), &Patch::Merge(&series))
                .await?;
            return Ok(());
        }
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or("object"),
            Timestamp::now().as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some("Reconcile".into()),
            event_time: Some(now),
            note: Some(note),
            reason: Some(reason.into()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(type_.into()),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        events.create(&PostParams::default(), &event).await?;
        published.insert(
            key,
            Published {
                namespace,
                name,
                count: 1,
                first: Instant::now(),
            },
        );
        Ok(())
    }
}
