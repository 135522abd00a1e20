//! What the package says about itself is true: the licenses it declares
//! are in the repository, no made-up repository address, and the
//! description names what the binary does.

use std::path::Path;

#[test]
fn the_declared_licenses_are_in_the_repository() {
    assert_eq!(env!("CARGO_PKG_LICENSE"), "MIT OR Apache-2.0");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (file, title) in [
        ("LICENSE-MIT", "MIT License"),
        ("LICENSE-APACHE", "Apache License"),
    ] {
        let text =
            std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(title), "{file} is not the {title}");
    }
}

#[test]
fn no_made_up_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifests = ["Cargo.toml"].into_iter().map(String::from).chain(
        ["herald-proto", "herald", "herald-server", "herald-cli"]
            .map(|c| format!("crates/{c}/Cargo.toml")),
    );
    for manifest in manifests {
        let text = std::fs::read_to_string(root.join(&manifest))
            .unwrap_or_else(|e| panic!("{manifest}: {e}"));
        assert!(
            !text.contains(".invalid"),
            "{manifest} names a made-up address"
        );
    }
}

#[test]
fn the_description_names_serve() {
    let description = env!("CARGO_PKG_DESCRIPTION");
    assert!(description.contains("serve"), "{description}");
    assert!(description.contains("bench"), "{description}");
}
