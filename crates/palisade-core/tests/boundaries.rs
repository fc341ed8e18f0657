//! The crate graph is the defense in depth: these checks keep it as ARCHITECTURE.md draws it.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LAYERS: [&str; 7] = [
    "palisade-authz",
    "palisade-secrets",
    "palisade-sandbox",
    "palisade-egress",
    "palisade-filter",
    "palisade-limits",
    "palisade-audit",
];

fn manifests() -> BTreeMap<String, toml::Table> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let path: PathBuf = entry.unwrap().path().join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let table: toml::Table = toml::from_str(&text).unwrap();
            let name = table["package"]["name"].as_str().unwrap().to_owned();
            out.insert(name, table);
        }
    }
    assert!(
        out.len() >= 12,
        "expected every crate, found {:?}",
        out.keys()
    );
    out
}

/// Normal and build dependencies (dev-dependencies may cross, for tests).
fn deps(manifest: &toml::Table) -> Vec<(String, toml::Value)> {
    ["dependencies", "build-dependencies"]
        .iter()
        .filter_map(|section| manifest.get(*section).and_then(|d| d.as_table()))
        .flat_map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect()
}

#[test]
fn layers_never_depend_on_each_other() {
    for (name, manifest) in manifests() {
        if !LAYERS.contains(&name.as_str()) {
            continue;
        }
        for (dep, _) in deps(&manifest) {
            assert!(
                !LAYERS.contains(&dep.as_str()),
                "layer `{name}` depends on layer `{dep}`"
            );
            assert!(
                !["palisade-pipeline", "palisade-server", "palisade-mcp"].contains(&dep.as_str()),
                "layer `{name}` depends on `{dep}`"
            );
        }
    }
}

#[test]
fn core_depends_on_no_palisade_crate_and_every_crate_keeps_the_lints() {
    let all = manifests();
    for (dep, _) in deps(&all["palisade-core"]) {
        assert!(
            !dep.starts_with("palisade"),
            "palisade-core depends on `{dep}`"
        );
    }
    for (name, manifest) in &all {
        let inherits = manifest
            .get("lints")
            .and_then(|l| l.get("workspace"))
            .and_then(|w| w.as_bool());
        assert_eq!(
            inherits,
            Some(true),
            "`{name}` does not inherit the workspace lints"
        );
    }
}

#[test]
fn layers_do_not_speak_mcp() {
    // Layers judge calls; only palisade-mcp turns bytes into MCP messages.
    for (name, manifest) in manifests() {
        if LAYERS.contains(&name.as_str()) {
            assert!(
                !deps(&manifest).iter().any(|(d, _)| d == "palisade-mcp"),
                "layer `{name}` depends on palisade-mcp"
            );
        }
    }
}
