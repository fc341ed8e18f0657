//! The crate graph is the defense in depth: these checks keep it as ARCHITECTURE.md draws it.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layer 3's egress rule engine is not among them: like the store, it is
/// below the layers, the one way out that those which send or relay traffic
/// (the secrets broker, the sandbox's listener) go through.
const LAYERS: [&str; 6] = [
    "palisade-authz",
    "palisade-secrets",
    "palisade-sandbox",
    "palisade-filter",
    "palisade-limits",
    "palisade-audit",
];

/// The one crate allowed `unsafe` code.
const UNSAFE_CRATE: &str = "palisade-sandbox";

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every crate under `crates/`: its directory and its parsed manifest, by package name.
fn manifests() -> BTreeMap<String, (PathBuf, toml::Table)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(crates_dir()).unwrap() {
        let dir: PathBuf = entry.unwrap().path();
        if let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) {
            let table: toml::Table = toml::from_str(&text).unwrap();
            let name = table["package"]["name"].as_str().unwrap().to_owned();
            out.insert(name, (dir, table));
        }
    }
    assert!(
        out.len() >= 12,
        "expected every crate, found {:?}",
        out.keys()
    );
    out
}

/// The workspace's root manifest.
fn workspace() -> toml::Table {
    let text = std::fs::read_to_string(crates_dir().join("../Cargo.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

/// One normal or build dependency: the package depended on, and the table it is listed in.
#[derive(Debug, PartialEq, Eq)]
struct Dep {
    package: String,
    section: String,
}

/// Normal and build dependencies (dev-dependencies may cross, for tests),
/// target-specific ones included, each under its package name: the
/// `package = "..."` of a renamed dependency, looked up in
/// `[workspace.dependencies]` for `foo = { workspace = true }`.
fn deps(manifest: &toml::Table, workspace: &toml::Table) -> Vec<Dep> {
    const KINDS: [&str; 2] = ["dependencies", "build-dependencies"];
    let mut sections: Vec<(String, &toml::Table)> = Vec::new();
    for kind in KINDS {
        if let Some(table) = manifest.get(kind).and_then(toml::Value::as_table) {
            sections.push((format!("[{kind}]"), table));
        }
    }
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for (target, specific) in targets {
            for kind in KINDS {
                if let Some(table) = specific.get(kind).and_then(toml::Value::as_table) {
                    sections.push((format!("[target.'{target}'.{kind}]"), table));
                }
            }
        }
    }
    let inherited = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(toml::Value::as_table);
    let mut out = Vec::new();
    for (section, table) in sections {
        for (key, spec) in table {
            let spec = if spec.get("workspace").and_then(toml::Value::as_bool) == Some(true) {
                inherited
                    .and_then(|w| w.get(key))
                    .unwrap_or_else(|| panic!("`{key}` is not in [workspace.dependencies]"))
            } else {
                spec
            };
            let package = spec
                .get("package")
                .and_then(toml::Value::as_str)
                .unwrap_or(key);
            out.push(Dep {
                package: package.to_owned(),
                section: section.clone(),
            });
        }
    }
    out
}

/// What is wrong with the dependencies of `name`, if it is a layer.
fn layer_violations(name: &str, manifest: &toml::Table, workspace: &toml::Table) -> Vec<String> {
    if !LAYERS.contains(&name) {
        return Vec::new();
    }
    deps(manifest, workspace)
        .into_iter()
        .filter(|d| {
            LAYERS.contains(&d.package.as_str())
                || ["palisade-pipeline", "palisade-server", "palisade-mcp"]
                    .contains(&d.package.as_str())
        })
        .map(|d| format!("layer `{name}` depends on `{}` in {}", d.package, d.section))
        .collect()
}

#[test]
fn layers_never_depend_on_each_other_nor_on_the_pipeline_server_or_mcp() {
    let workspace = workspace();
    for (name, (_, manifest)) in manifests() {
        let violations = layer_violations(&name, &manifest, &workspace);
        assert!(violations.is_empty(), "{violations:#?}");
    }
}

/// The state store and the egress are below the layers: layers may depend
/// on them (they are not layers), and they depend on no palisade crate but
/// `palisade-core`, so they can know nothing of the layers that use them.
fn store_violations(manifest: &toml::Table, workspace: &toml::Table) -> Vec<String> {
    below_violations("palisade-store", manifest, workspace)
}

fn below_violations(name: &str, manifest: &toml::Table, workspace: &toml::Table) -> Vec<String> {
    deps(manifest, workspace)
        .into_iter()
        .filter(|d| d.package.starts_with("palisade") && d.package != "palisade-core")
        .map(|d| format!("`{name}` depends on `{}` in {}", d.package, d.section))
        .collect()
}

#[test]
fn the_store_and_the_egress_depend_on_no_palisade_crate_but_core() {
    let all = manifests();
    for name in ["palisade-store", "palisade-egress"] {
        let violations = below_violations(name, &all[name].1, &workspace());
        assert!(violations.is_empty(), "{violations:#?}");
    }
}

#[test]
fn core_depends_on_no_palisade_crate_and_every_crate_keeps_the_lints() {
    let all = manifests();
    let workspace = workspace();
    for dep in deps(&all["palisade-core"].1, &workspace) {
        assert!(
            !dep.package.starts_with("palisade"),
            "palisade-core depends on `{}` in {}",
            dep.package,
            dep.section
        );
    }
    for (name, (_, manifest)) in &all {
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
    let workspace = workspace();
    for (name, (_, manifest)) in manifests() {
        if LAYERS.contains(&name.as_str()) {
            assert!(
                !deps(&manifest, &workspace)
                    .iter()
                    .any(|d| d.package == "palisade-mcp"),
                "layer `{name}` depends on palisade-mcp"
            );
        }
    }
}

/// A crate's roots: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs`,
/// `src/bin/*/main.rs`, and any `[lib]` or `[[bin]]` path its manifest names.
fn crate_roots(dir: &Path, manifest: &toml::Table) -> Vec<PathBuf> {
    let mut roots = vec![dir.join("src/lib.rs"), dir.join("src/main.rs")];
    if let Ok(entries) = std::fs::read_dir(dir.join("src/bin")) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                roots.push(path.join("main.rs"));
            } else if path.extension().is_some_and(|e| e == "rs") {
                roots.push(path);
            }
        }
    }
    let declared = manifest.get("lib").into_iter().chain(
        manifest
            .get("bin")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten(),
    );
    for target in declared {
        if let Some(path) = target.get("path").and_then(toml::Value::as_str) {
            roots.push(dir.join(path));
        }
    }
    roots.retain(|p| p.is_file());
    roots.sort();
    roots.dedup();
    roots
}

/// Whether a root forbids `unsafe` for its whole crate: the attribute on a
/// line of its own, unindented (rustfmt indents one inside a `mod { }`).
fn forbids_unsafe(source: &str) -> bool {
    source.lines().any(|line| line == "#![forbid(unsafe_code)]")
}

#[test]
fn unsafe_is_forbidden_in_every_crate_but_the_sandbox() {
    let all = manifests();
    assert!(all.contains_key(UNSAFE_CRATE), "{UNSAFE_CRATE} is gone");
    for (name, (dir, manifest)) in &all {
        let roots = crate_roots(dir, manifest);
        assert!(!roots.is_empty(), "`{name}` has no crate root");
        for root in roots {
            let source = std::fs::read_to_string(&root).unwrap();
            if name == UNSAFE_CRATE {
                assert!(
                    !forbids_unsafe(&source),
                    "{} forbids unsafe: the sandbox needs it",
                    root.display()
                );
            } else {
                assert!(
                    forbids_unsafe(&source),
                    "{} lacks `#![forbid(unsafe_code)]`",
                    root.display()
                );
            }
        }
    }
    // The rest of the arrangement: denied (not forbidden) in the workspace,
    // so the sandbox can `#[expect]` it, and every block documented.
    let lints = &workspace()["workspace"]["lints"];
    assert_eq!(lints["rust"]["unsafe_code"].as_str(), Some("deny"));
    assert_eq!(
        lints["clippy"]["undocumented_unsafe_blocks"].as_str(),
        Some("deny")
    );
}

// ---------------------------------------------------------- the helpers' own tests

fn table(text: &str) -> toml::Table {
    toml::from_str(text).unwrap()
}

fn packages(manifest: &str, workspace: &str) -> Vec<String> {
    let mut out: Vec<String> = deps(&table(manifest), &table(workspace))
        .into_iter()
        .map(|d| d.package)
        .collect();
    out.sort();
    out
}

#[test]
fn deps_reads_a_renamed_dependency_by_its_package() {
    let manifest = r#"
        [dependencies]
        wire = { package = "palisade-mcp", path = "../palisade-mcp" }
        serde = "1"
    "#;
    assert_eq!(packages(manifest, ""), ["palisade-mcp", "serde"]);
}

#[test]
fn deps_reads_target_specific_and_build_dependencies() {
    let manifest = r#"
        [target.'cfg(unix)'.dependencies]
        palisade-authz = { path = "../palisade-authz" }

        [target.x86_64-unknown-linux-gnu.build-dependencies]
        gen = { package = "palisade-filter", path = "../palisade-filter" }

        [target.'cfg(windows)'.dev-dependencies]
        palisade-server = { path = "../palisade-server" }

        [dev-dependencies]
        palisade-pipeline = { path = "../palisade-pipeline" }
    "#;
    assert_eq!(
        packages(manifest, ""),
        ["palisade-authz", "palisade-filter"]
    );
    let sections: Vec<String> = deps(&table(manifest), &table(""))
        .into_iter()
        .map(|d| d.section)
        .collect();
    assert!(
        sections.contains(&"[target.'cfg(unix)'.dependencies]".to_owned()),
        "{sections:?}"
    );
}

#[test]
fn deps_follows_a_workspace_dependency_to_its_package() {
    let workspace = r#"
        [workspace.dependencies]
        core = { package = "palisade-core", path = "crates/palisade-core" }
        palisade-audit = { path = "crates/palisade-audit" }
    "#;
    let manifest = r#"
        [dependencies]
        core = { workspace = true }
        palisade-audit = { workspace = true, optional = true }
    "#;
    assert_eq!(
        packages(manifest, workspace),
        ["palisade-audit", "palisade-core"]
    );
}

#[test]
fn a_layer_reaching_another_layer_in_disguise_is_caught() {
    let manifest = table(
        r#"
        [dependencies]
        palisade-core = { workspace = true }

        [target.'cfg(target_os = "linux")'.dependencies]
        helper = { package = "palisade-sandbox", path = "../palisade-sandbox" }
    "#,
    );
    let workspace = table(
        r#"
        [workspace.dependencies]
        palisade-core = { path = "crates/palisade-core" }
    "#,
    );
    let violations = layer_violations("palisade-filter", &manifest, &workspace);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("palisade-sandbox"));
    // The same manifest is fine for a crate that is not a layer.
    assert!(layer_violations("palisade-pipeline", &manifest, &workspace).is_empty());
}

#[test]
fn layers_may_use_the_store_and_the_store_may_use_only_core() {
    let workspace = table(
        r#"
        [workspace.dependencies]
        palisade-core = { path = "crates/palisade-core" }
        palisade-store = { path = "crates/palisade-store" }
    "#,
    );
    let layer = table(
        r#"
        [dependencies]
        palisade-core = { workspace = true }
        palisade-store = { workspace = true }
    "#,
    );
    assert!(layer_violations("palisade-authz", &layer, &workspace).is_empty());
    let store = table(
        r#"
        [dependencies]
        palisade-core = { workspace = true }
        rusqlite = "0.43"
    "#,
    );
    assert!(store_violations(&store, &workspace).is_empty());
    let reaching_up = table(
        r#"
        [dependencies]
        palisade-core = { workspace = true }

        [target.'cfg(unix)'.dependencies]
        keys = { package = "palisade-authz", path = "../palisade-authz" }
    "#,
    );
    let violations = store_violations(&reaching_up, &workspace);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("palisade-authz"));
}

#[test]
fn forbids_unsafe_wants_the_crate_level_attribute() {
    assert!(forbids_unsafe(
        "//! doc\n#![forbid(unsafe_code)]\n\nuse x;\n"
    ));
    assert!(!forbids_unsafe("//! doc\n// #![forbid(unsafe_code)]\n"));
    assert!(!forbids_unsafe(
        "mod inner {\n    #![forbid(unsafe_code)]\n}\n"
    ));
    assert!(!forbids_unsafe("#![deny(unsafe_code)]\n"));
    assert!(!forbids_unsafe(""));
}
