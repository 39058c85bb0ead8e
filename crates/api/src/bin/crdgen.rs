//! Prints the ZooKeeperCluster CRD as YAML: cargo run -p zkop-api --bin crdgen > deploy/chart/crds/zookeeperclusters.yaml
fn main() {
    print!(
        "# Generated from crates/api by `make crd`; do not edit.\n{}",
        zkop_api::crd_yaml()
    );
}
