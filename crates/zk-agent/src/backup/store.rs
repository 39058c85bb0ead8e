//! Where backups are kept: an S3-compatible object store or a directory (a mounted volume), both
//! through `object_store`, so the S3 code is the one a user points at AWS S3, MinIO or Ceph.
//! Layout: `<prefix>/<backup name>/<file>.gz` and `<prefix>/<backup name>/manifest.json`.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to reach the target. Credentials for S3 come from `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` (the operator maps them from the user's Secret).
#[derive(Debug, Clone)]
pub enum Target {
    S3 {
        bucket: String,
        prefix: String,
        /// `https://host:port` of an S3-compatible service; AWS when unset.
        endpoint: Option<String>,
        region: String,
        /// PEM file of the CA that signed the endpoint's certificate, if not a public one.
        ca_file: Option<PathBuf>,
    },
    Directory {
        root: PathBuf,
        prefix: String,
    },
}

impl Target {
    /// Where backups go, with the endpoint when it is not AWS: `s3://bucket/prefix (at https://...)`.
    pub fn describe(&self) -> String {
        self.location_of("")
    }

    /// Where one backup is.
    pub fn location_of(&self, backup: &str) -> String {
        let join = |base: String, prefix: &str| {
            [base.as_str(), prefix.trim_matches('/'), backup]
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/")
        };
        match self {
            Target::S3 {
                bucket,
                prefix,
                endpoint,
                ..
            } => format!(
                "{}{}",
                join(format!("s3://{bucket}"), prefix),
                endpoint.as_ref().map(|e| format!(" (at {e})")).unwrap_or_default()
            ),
            Target::Directory { root, prefix } => join(root.display().to_string(), prefix),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Config(String),
    #[error("{action} {what} at {target}: {source}{}", hint(source))]
    Access {
        action: &'static str,
        what: String,
        target: String,
        #[source]
        source: Box<object_store::Error>,
    },
}

/// What the usual failures mean, in the user's terms.
fn hint(error: &object_store::Error) -> &'static str {
    let text = error.to_string();
    if text.contains("SignatureDoesNotMatch") || text.contains("InvalidAccessKeyId") || text.contains("403") {
        " (the store refused the credentials: check the Secret named by credentialsSecret, keys accessKeyId and secretAccessKey)"
    } else if text.contains("NoSuchBucket") {
        " (the bucket does not exist: create it, or fix the bucket name)"
    } else if text.contains("error sending request") || text.contains("connect") {
        " (the endpoint cannot be reached, or its certificate is not trusted: check the endpoint, the network path to it and caSecret)"
    } else {
        ""
    }
}

pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    target: String,
    location: Target,
}

impl Store {
    pub fn open(target: &Target) -> Result<Store, StoreError> {
        let (inner, prefix): (Arc<dyn ObjectStore>, &str) = match target {
            Target::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                ca_file,
            } => {
                let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default();
                let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default();
                if key.is_empty() || secret.is_empty() {
                    return Err(StoreError::Config(
                        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (the Secret named by \
                         spec.backup.target.s3.credentialsSecret, keys accessKeyId and secretAccessKey)"
                            .into(),
                    ));
                }
                // A download is one request however large the object: it may take long, but
                // never sit silent for a minute.
                let mut options = ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_read_timeout(Duration::from_secs(60))
                    .with_timeout(Duration::from_secs(3600));
                if let Some(endpoint) = endpoint {
                    options = options.with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(ca_file) = ca_file {
                    let pem = std::fs::read(ca_file)
                        .map_err(|e| StoreError::Config(format!("reading the CA file {}: {e}", ca_file.display())))?;
                    let certificates = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
                        StoreError::Config(format!("the CA file {} is not PEM: {e}", ca_file.display()))
                    })?;
                    for certificate in certificates {
                        options = options.with_root_certificate(certificate);
                    }
                }
                let retry = RetryConfig {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(30),
                    ..RetryConfig::default()
                };
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_access_key_id(key)
                    .with_secret_access_key(secret)
                    .with_client_options(options)
                    .with_retry(retry);
                if let Some(endpoint) = endpoint {
                    builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
                }
                let store = builder
                    .build()
                    .map_err(|e| StoreError::Config(format!("the S3 target: {e}")))?;
                (Arc::new(store), prefix.as_str())
            }
            Target::Directory { root, prefix } => {
                std::fs::create_dir_all(root)
                    .map_err(|e| StoreError::Config(format!("creating {}: {e}", root.display())))?;
                let store = LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| StoreError::Config(format!("the directory {}: {e}", root.display())))?;
                (Arc::new(store), prefix.as_str())
            }
        };
        Ok(Store {
            inner,
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            target: target.describe(),
            location: target.clone(),
        })
    }

    pub fn describe(&self) -> &str {
        &self.target
    }

    fn path(&self, backup: &str, object: &str) -> ObjectPath {
        self.prefix.clone().join(backup).join(object)
    }

    pub fn location(&self, backup: &str) -> String {
        self.location.location_of(backup)
    }

    pub async fn put(&self, backup: &str, object: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.inner
            .put(&self.path(backup, object), bytes.into())
            .await
            .map(|_| ())
            .map_err(|source| StoreError::Access {
                action: "writing",
                what: format!("{backup}/{object}"),
                target: self.target.clone(),
                source: Box::new(source),
            })
    }

    /// An object written as it is produced: held in memory up to one part, sent as one request
    /// when it is no larger, and as a multipart upload of parts of that size (a few in flight)
    /// when it is.
    pub fn upload(&self, backup: &str, object: &str) -> Upload<'_> {
        Upload {
            store: self,
            backup: backup.to_string(),
            object: object.to_string(),
            pending: Vec::new(),
            multipart: None,
        }
    }

    fn access_error(
        &self,
        action: &'static str,
        backup: &str,
        object: &str,
        source: object_store::Error,
    ) -> StoreError {
        StoreError::Access {
            action,
            what: format!("{backup}/{object}"),
            target: self.target.clone(),
            source: Box::new(source),
        }
    }

    /// The object's bytes as they arrive; `None` when the object does not exist.
    pub async fn get_stream(
        &self,
        backup: &str,
        object: &str,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, StoreError>>>, StoreError> {
        match self.inner.get(&self.path(backup, object)).await {
            Ok(result) => {
                let (backup, object, target) = (backup.to_string(), object.to_string(), self.target.clone());
                Ok(Some(Box::pin(result.into_stream().map_err(move |source| {
                    StoreError::Access {
                        action: "reading",
                        what: format!("{backup}/{object}"),
                        target: target.clone(),
                        source: Box::new(source),
                    }
                }))))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.access_error("reading", backup, object, e)),
        }
    }

    /// `None` when the object does not exist.
    pub async fn get(&self, backup: &str, object: &str) -> Result<Option<Bytes>, StoreError> {
        let access = |source: object_store::Error| StoreError::Access {
            action: "reading",
            what: format!("{backup}/{object}"),
            target: self.target.clone(),
            source: Box::new(source),
        };
        match self.inner.get(&self.path(backup, object)).await {
            Ok(result) => result.bytes().await.map(Some).map_err(access),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(access(e)),
        }
    }

    /// Every backup under the prefix, and whether it has its manifest.
    pub async fn list(&self) -> Result<BTreeMap<String, bool>, StoreError> {
        let objects: Vec<_> = self
            .inner
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|source| StoreError::Access {
                action: "listing",
                what: "the backups".into(),
                target: self.target.clone(),
                source: Box::new(source),
            })?;
        let depth = self.prefix.parts().count();
        let mut backups = BTreeMap::new();
        for object in objects {
            let parts: Vec<String> = object.location.parts().map(|p| p.as_ref().to_string()).collect();
            if parts.len() != depth + 2 {
                continue;
            }
            let complete = backups.entry(parts[depth].clone()).or_insert(false);
            *complete |= parts[depth + 1] == super::MANIFEST;
        }
        Ok(backups)
    }

    /// Deletes a backup: its manifest first, so that it is never seen complete with files missing.
    pub async fn delete(&self, backup: &str) -> Result<(), StoreError> {
        let access = |source: object_store::Error| StoreError::Access {
            action: "deleting",
            what: backup.to_string(),
            target: self.target.clone(),
            source: Box::new(source),
        };
        let dir = self.prefix.clone().join(backup);
        let mut objects: Vec<ObjectPath> = self
            .inner
            .list(Some(&dir))
            .map_ok(|o| o.location)
            .try_collect()
            .await
            .map_err(access)?;
        objects.sort_by_key(|p| p.filename() != Some(super::MANIFEST));
        for object in objects {
            match self.inner.delete(&object).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(access(e)),
            }
        }
        Ok(())
    }
}

/// The size of each part of a multipart upload (S3 takes 5 MiB at least, but for the last).
pub const PART_SIZE: usize = 8 << 20;
/// Parts sent at once: memory is about a part more than this many parts.
const PARTS_IN_FLIGHT: usize = 2;

/// One object being written; see [`Store::upload`]. Nothing is visible under the object's name
/// before [`Upload::finish`]; on an error, [`Upload::abort`] drops what was sent.
pub struct Upload<'a> {
    store: &'a Store,
    backup: String,
    object: String,
    pending: Vec<u8>,
    multipart: Option<WriteMultipart>,
}

impl Upload<'_> {
    fn error(&self, action: &'static str, source: object_store::Error) -> StoreError {
        self.store.access_error(action, &self.backup, &self.object, source)
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        if self.multipart.is_none() {
            if self.pending.len() + bytes.len() <= PART_SIZE {
                self.pending.extend_from_slice(bytes);
                return Ok(());
            }
            let path = self.store.path(&self.backup, &self.object);
            let upload = self
                .store
                .inner
                .put_multipart(&path)
                .await
                .map_err(|e| self.error("writing", e))?;
            let mut multipart = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            multipart.write(&std::mem::take(&mut self.pending));
            self.multipart = Some(multipart);
        }
        let multipart = self.multipart.as_mut().expect("started above");
        if let Err(e) = multipart.wait_for_capacity(PARTS_IN_FLIGHT).await {
            return Err(self.error("writing", e));
        }
        self.multipart.as_mut().expect("started above").write(bytes);
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(), StoreError> {
        match self.multipart.take() {
            Some(multipart) => multipart
                .finish()
                .await
                .map(|_| ())
                .map_err(|e| self.error("writing", e)),
            None => {
                let bytes = Bytes::from(std::mem::take(&mut self.pending));
                self.store.put(&self.backup, &self.object, bytes).await
            }
        }
    }

    /// Best effort: the parts already sent are dropped.
    pub async fn abort(mut self) {
        if let Some(multipart) = self.multipart.take() {
            let _ = multipart.abort().await;
        }
    }
}
