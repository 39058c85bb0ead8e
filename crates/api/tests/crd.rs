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

/// The default ZooKeeper version is written in a few files that cannot read this crate: each
/// names `DEFAULT_VERSION`, and each has the pinned checksums it builds from.
#[test]
fn every_build_file_names_the_default_version() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");
    let version = zkop_api::DEFAULT_VERSION;
    for (file, expected) in [
        ("Makefile", format!("ZOOKEEPER_VERSION ?= {version}\n")),
        ("Makefile", format!("ZOOKEEPER_VERSIONS := {version} ")),
        (
            "scripts/install-operator.sh",
            format!("versions=${{ZOOKEEPER_VERSIONS:-{version} "),
        ),
        ("image/Dockerfile", format!("ARG ZOOKEEPER_VERSION={version}\n")),
        (
            "image/zookeeper-dist/pom.xml",
            format!("<zookeeper.version>{version}</zookeeper.version>"),
        ),
        ("examples/zookeeper.yaml", format!("version: \"{version}\"")),
    ] {
        let text = std::fs::read_to_string(format!("{root}{file}")).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(&expected), "{file} does not say {expected:?}");
    }
    let sums = format!("{root}image/zookeeper-dist/SHA256SUMS.{version}");
    assert!(std::path::Path::new(&sums).is_file(), "no pinned checksums: {sums}");
}
