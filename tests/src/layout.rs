//! The layout the workspace promises: every function deployed, routed and documented alike.

use super::workspace_root;

/// The functions no HTTP route reaches: the stream's consumer and the webhook deliverer.
const BACKGROUND: &[&str] = &["publish-events", "deliver-webhooks", "repair-events"];

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

/// The store's rooms depend one way (keys → records → items → transactions → operations):
/// no two of `shared/src/store/dynamo/*.rs` import each other, directly or around a circle,
/// and none passes 600 lines.
#[test]
fn the_stores_modules_import_one_way() {
    let dir = workspace_root().join("shared/src/store/dynamo");
    let mut imports: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(module) = name.strip_suffix(".rs") else {
            continue;
        };
        if module == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        // Tests may use anything.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        assert!(
            text.lines().count() <= 600,
            "{name} has {} lines: split it by responsibility",
            text.lines().count()
        );
        let mut used: Vec<String> = code
            .match_indices("super::")
            .filter_map(|(at, _)| {
                let rest = &code[at + "super::".len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let target = &rest[..end];
                // `super::{DynamoStore, Item}` and other items of mod.rs are not rooms.
                (!target.is_empty() && target.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                    .then(|| target.to_owned())
            })
            .filter(|t| t != module)
            .collect();
        used.sort();
        used.dedup();
        imports.insert(module.to_owned(), used);
    }
    assert!(
        imports.len() > 5,
        "no store modules found in {}",
        dir.display()
    );
    // Depth-first search for a circle.
    fn visit(
        m: &str,
        imports: &std::collections::BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!(
                "the store's modules import in a circle: {} → {m}",
                path[at..].join(" → ")
            );
        }
        path.push(m.to_owned());
        for next in imports.get(m).into_iter().flatten() {
            if imports.contains_key(next) {
                visit(next, imports, path, done);
            }
        }
        path.pop();
        done.insert(m.to_owned());
    }
    let mut done = Default::default();
    for m in imports.keys() {
        visit(m, &imports, &mut Vec::new(), &mut done);
    }
}

/// The HTTP glue knows no protocol beyond problem+json (each function or route chooses its
/// error renderer), and what SCIM and the change events share with the handlers (cursors,
/// the byte budget of a page) lives below all of them: neither reaches up into `handlers`.
#[test]
fn the_glue_knows_no_scim_and_nothing_reaches_up_into_handlers() {
    let root = workspace_root().join("shared/src");
    let code = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let glue = code(&root.join("http.rs"));
    assert!(
        !glue.contains("scim"),
        "shared/src/http.rs names SCIM: let the SCIM functions choose their error renderer"
    );
    let mut below = vec![root.join("events.rs"), root.join("paging.rs")];
    below.extend(
        std::fs::read_dir(root.join("scim"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    assert!(below.len() > 3, "no SCIM modules found");
    for path in below {
        assert!(
            !code(&path).contains("handlers::"),
            "{} reaches up into handlers",
            path.display()
        );
    }
}
