//! The layout the workspace promises: every function deployed, routed and documented alike.

use super::workspace_root;

/// The functions no HTTP route reaches: the stream's consumer and the webhook deliverer.
const BACKGROUND: &[&str] = &["publish-events", "deliver-webhooks"];

/// Every function crate is deployed by template.yaml and routed by the local watch router.
#[test]
fn every_function_has_a_template_resource_and_a_local_route() {
    let root = workspace_root();
    let template = std::fs::read_to_string(root.join("template.yaml")).unwrap_or_default();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let functions: Vec<String> = std::fs::read_dir(root.join("functions"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(!functions.is_empty(), "no function crates found");
    for f in &functions {
        assert!(
            template.contains(&format!("Binary: {f}\n")),
            "{f} has no resource in template.yaml"
        );
        // Functions that serve no HTTP route (a stream's or a queue's) have none locally.
        if BACKGROUND.contains(&f.as_str()) {
            assert!(
                !manifest.contains(&format!("function = \"{f}\"")),
                "{f} serves no route, yet the watch router has one"
            );
            continue;
        }
        assert!(
            manifest.contains(&format!("function = \"{f}\"")),
            "{f} has no route in the watch router"
        );
    }
    let binaries = template.matches("Binary: ").count();
    assert_eq!(
        binaries,
        functions.len(),
        "template.yaml deploys a function that has no crate"
    );
}

/// Every path answers every other method with the fallback (405 with `Allow`), in the
/// local router (each method listed) and in template.yaml (an `ANY` route); any other path
/// reaches the fallback too.
#[test]
fn every_path_has_a_fallback_for_other_methods() {
    let root = workspace_root();
    let template = std::fs::read_to_string(root.join("template.yaml")).unwrap_or_default();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let mut paths: Vec<&str> = super::ROUTES.iter().map(|(_, p)| *p).collect();
    paths.dedup();
    for path in paths {
        assert!(
            template.contains(&format!("Method: ANY\n            Path: {path}\n")),
            "template.yaml lacks ANY {path}"
        );
        let start = manifest
            .find(&format!("\"{path}\" = ["))
            .unwrap_or_else(|| panic!("router lacks {path}"));
        let entry = &manifest[start..start + manifest[start..].find("\n]").unwrap_or(0)];
        for method in [
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "QUERY",
        ] {
            assert!(
                entry.contains(&format!("method = \"{method}\"")),
                "router: {method} {path} reaches no function"
            );
        }
    }
    assert!(
        manifest.contains("\"/{*path}\" = \"fallback\""),
        "router: no catch-all"
    );
    assert!(
        template.contains("        Default:\n          Type: HttpApi\n          Properties:\n            ApiId: !Ref MembersApi\n\n"),
        "template.yaml: no $default route"
    );
}

/// The routes the tests know are the ones API Gateway and the local router serve.
#[test]
fn template_router_and_routes_list_the_same_routes() {
    let root = workspace_root();
    let template = std::fs::read_to_string(root.join("template.yaml")).unwrap_or_default();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    for (method, path) in super::ROUTES {
        let in_template = format!("Method: {method}\n            Path: {path}\n");
        assert!(
            template.contains(&in_template),
            "template.yaml lacks {method} {path}"
        );
        let start = manifest
            .find(&format!("\"{path}\" = ["))
            .unwrap_or_else(|| panic!("router lacks {path}"));
        let entry = &manifest[start..start + manifest[start..].find(']').unwrap_or(0)];
        assert!(
            entry.contains(&format!("method = \"{method}\"")),
            "router lacks {method} {path}"
        );
    }
    assert_eq!(
        template.matches("            Method: ").count()
            - template.matches("            Method: ANY\n").count(),
        super::ROUTES.len(),
        "template.yaml has a route the tests do not know"
    );
    assert_eq!(
        manifest.matches("method = \"").count()
            - manifest.matches("function = \"fallback\"").count(),
        super::ROUTES.len(),
        "the router has a route the tests do not know"
    );
}
