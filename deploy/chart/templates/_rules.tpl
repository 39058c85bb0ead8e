{{/*
The rules the operator needs on the namespaces it watches, and nothing more. Used by the
ClusterRole (watchNamespaces empty: every namespace) or by one Role per watched namespace.
*/}}
{{- define "zkop.rules" -}}
- apiGroups: ["zookeeper.zkop.io"]
  resources: ["zookeeperclusters"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["zookeeper.zkop.io"]
  resources: ["zookeeperclusters/status"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create", "patch"]
# The live ConfigMap of each cluster and one immutable ConfigMap per configuration revision;
# revisions no pod uses any more are deleted.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch"]
# One NetworkPolicy per cluster: who may reach its members.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch"]
# Members are restarted one at a time, the leader last (the StatefulSet uses OnDelete),
# through the Eviction API so that PodDisruptionBudgets are respected.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
# Each cluster's Secrets (admin password, certificate authority, member and client
# certificates), by name: no list or watch, so Secrets cannot be enumerated.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
# Volumes grow in place; a volume a removed member left behind is deleted before it is added again.
# A backup target's claim is read by name for its opt-in label (docs/security.md).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "patch", "delete"]
# Backup jobs (one per backup, on the node of the member they read) and restore checks;
# removed once their result is in the cluster's status.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
