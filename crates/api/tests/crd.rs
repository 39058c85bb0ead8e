//! The CRD the chart installs (deploy/chart/crds) is the one this crate generates: `make crd`
//! writes it. Run through the crdgen binary, as `make crd` runs it.

#[test]
fn the_committed_crd_is_the_generated_one() {
    let generated = std::process::Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .output()
        .expect("running crdgen");
    assert!(generated.status.success(), "crdgen failed: {generated:?}");
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/chart/crds/zookeeperclusters.yaml"
    ))
    .expect("reading deploy/chart/crds/zookeeperclusters.yaml");
    assert!(
        String::from_utf8_lossy(&generated.stdout) == committed,
        "deploy/chart/crds/zookeeperclusters.yaml is not what crates/api generates: run make crd"
    );
}
