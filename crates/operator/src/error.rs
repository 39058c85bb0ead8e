//! Reconcile errors say which stage of the pipeline failed and on which object.

use std::fmt;

/// The stages of a reconcile, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Reading the resource itself.
    Decode,
    /// Reading the cluster's objects and the ensemble.
    Observe,
    /// Applying the desired objects.
    Apply,
    /// Carrying out the planned day-2 step.
    Execute,
    /// Backup and restore-check jobs: reading their results, starting and removing them.
    Backup,
    /// Writing status.
    Status,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Decode,
        Stage::Observe,
        Stage::Apply,
        Stage::Execute,
        Stage::Backup,
        Stage::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Observe => "observe",
            Stage::Apply => "apply",
            Stage::Execute => "execute",
            Stage::Backup => "backup",
            Stage::Status => "status",
        }
    }

    /// The condition reason and event reason for a failure in this stage.
    pub fn failure_reason(self) -> &'static str {
        match self {
            Stage::Decode => "InvalidResource",
            Stage::Observe => "ObserveFailed",
            Stage::Apply => "ApplyFailed",
            Stage::Execute => "StepFailed",
            Stage::Backup => "BackupJobFailed",
            Stage::Status => "StatusFailed",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{stage} {object}: {source}")]
    Kube {
        stage: Stage,
        /// `Kind namespace/name` of the object the call was about.
        object: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("decode {object}: {message}")]
    Undecodable { object: String, message: String },
    /// An object with the name the cluster needs exists and belongs to someone else: the
    /// operator never takes it over.
    #[error("apply {object}: it exists and was not made by this cluster; the operator leaves it alone. Rename or remove it, or give the cluster another name")]
    NameClash { object: String },
    /// TLS material cannot be made (a user's authority that cannot be read or used).
    #[error("tls: {message}")]
    Tls { message: String },
}

impl Error {
    pub fn stage(&self) -> Stage {
        match self {
            Error::Kube { stage, .. } => *stage,
            Error::Undecodable { .. } => Stage::Decode,
            Error::NameClash { .. } | Error::Tls { .. } => Stage::Apply,
        }
    }

    /// The reason for the condition and the event.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NameClash { .. } => "NameClash",
            Error::Tls { .. } => "TlsFailed",
            other => other.stage().failure_reason(),
        }
    }

    /// The API server's reason (e.g. `Invalid`, `Forbidden`), when it gave one.
    pub fn api_reason(&self) -> Option<&str> {
        match self {
            Error::Kube { source, .. } => match source.as_ref() {
                kube::Error::Api(status) => Some(status.reason.as_str()),
                _ => None,
            },
            Error::Undecodable { .. } | Error::NameClash { .. } | Error::Tls { .. } => None,
        }
    }
}

/// Attaches the stage and the object to a Kubernetes API result.
pub trait At<T> {
    fn at(self, stage: Stage, object: impl fmt::Display) -> Result<T, Error>;
}

impl<T> At<T> for Result<T, kube::Error> {
    fn at(self, stage: Stage, object: impl fmt::Display) -> Result<T, Error> {
        self.map_err(|source| Error::Kube {
            stage,
            object: object.to_string(),
            source: Box::new(source),
        })
    }
}

/// `Kind namespace/name`, the way errors and events name an object.
pub fn object_name<K: kube::Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{} {}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or(""),
        object.meta().name.as_deref().unwrap_or("")
    )
}

/// `Kind namespace/name` for an object known only by its name.
pub fn named<K: kube::Resource<DynamicType = ()>>(namespace: &str, name: &str) -> String {
    format!("{} {namespace}/{name}", K::kind(&()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSet;

    #[test]
    fn errors_name_the_stage_and_the_object() {
        let failed: Result<(), kube::Error> = Err(kube::Error::Api(
            kube::core::Status::failure(
                "spec.template.spec.tolerations[0].operator: Unsupported value",
                "Invalid",
            )
            .with_code(422)
            .boxed(),
        ));
        let error = failed.at(Stage::Apply, named::<StatefulSet>("prod", "zk")).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("apply StatefulSet prod/zk: "), "{text}");
        assert!(text.contains("tolerations"), "{text}");
        assert_eq!(error.stage().failure_reason(), "ApplyFailed");
        assert_eq!(error.api_reason(), Some("Invalid"));
    }
}
