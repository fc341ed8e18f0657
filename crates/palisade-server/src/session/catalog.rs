//! What each upstream lists, per session, until it says its list changed: the items shown, the names that may be called, the URIs each owns.
//!
//! An upstream's word is data. A name with control or invisible characters,
//! or a case twin of another, is hidden (it could mislead a person or a
//! model reading the listing); a URI or template another upstream already
//! claims is refused. Ownership follows the configuration's order of
//! upstreams, the operator's order of trust, never the order listings happen
//! to arrive in; and nothing is learnt past its bound.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use palisade_core::ListingFinding;
use serde_json::Value;

use super::listing::Listing;

/// Items one upstream may list in one listing; a longer listing is refused.
pub(super) const MAX_ITEMS: usize = 10_000;
/// Bytes (as JSON) one upstream's listing may take; a larger one is refused.
pub(super) const MAX_BYTES: usize = 8 * 1024 * 1024;
/// Longest name the 2025-11-25 specification allows a tool.
const MAX_NAME: usize = 128;

/// One upstream's listing as palisade keeps it.
#[derive(Debug, Default)]
pub(super) struct Listed {
    /// The items as the client sees them: renamed, hidden ones left out.
    pub items: Vec<Value>,
    /// Tools and prompts: the own (unprefixed) names shown, the only ones callable.
    pub names: HashSet<String>,
    /// Resources: the URIs listed; templates: the fixed part of each (up to `{`).
    pub claims: Vec<String>,
    /// Tools: the definition of each name shown, as the upstream lists it, for pinning.
    pub definitions: HashMap<String, palisade_filter::pins::Definition>,
}

/// A name palisade hid or reported, for the log and the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Noticed {
    pub name: String,
    pub finding: ListingFinding,
    pub hidden: bool,
}

/// What is wrong with a name, worst first; `None` when nothing is.
pub(super) fn judge_name(name: &str) -> Option<ListingFinding> {
    if name.is_empty() {
        return Some(ListingFinding::Unnamed);
    }
    if name.chars().any(char::is_control) {
        return Some(ListingFinding::ControlCharacters);
    }
    if name
        .chars()
        .any(palisade_filter::unicode::prints_as_nothing)
    {
        return Some(ListingFinding::InvisibleCharacters);
    }
    let standard = name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    (!standard).then_some(ListingFinding::Nonstandard)
}

/// Builds what palisade keeps of one upstream's listing from its raw items.
/// Tools and prompts get `prefix`; `strict` hides nonstandard names too.
pub(super) fn build(
    listing: Listing,
    prefix: &str,
    raw: Vec<Value>,
    strict: bool,
) -> (Listed, Vec<Noticed>) {
    let mut listed = Listed::default();
    let mut noticed = Vec::new();
    let key = match listing {
        Listing::Tools | Listing::Prompts => "name",
        Listing::Resources => "uri",
        Listing::Templates => "uriTemplate",
    };
    let name_of = |item: &Value| {
        item.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    // Case twins within the listing: every member of a group is hidden, so
    // that neither can pass for the other.
    let mut folded: HashMap<String, usize> = HashMap::new();
    if matches!(listing, Listing::Tools | Listing::Prompts) {
        for item in &raw {
            let count = folded.entry(name_of(item).to_lowercase()).or_default();
            *count = count.saturating_add(1);
        }
    }
    for mut item in raw {
        let name = name_of(&item);
        let finding = match listing {
            Listing::Tools | Listing::Prompts => judge_name(&name).or_else(|| {
                (folded.get(&name.to_lowercase()).copied().unwrap_or(0) > 1)
                    .then_some(ListingFinding::CaseCollision)
            }),
            // URIs are addresses, not names: only what cannot be shown is judged.
            Listing::Resources | Listing::Templates => match judge_name(&name) {
                Some(ListingFinding::Nonstandard) | None => None,
                Some(finding) => Some(finding),
            },
        };
        if let Some(finding) = finding {
            let hidden = finding.hides(strict);
            noticed.push(Noticed {
                name: name.clone(),
                finding,
                hidden,
            });
            if hidden {
                continue;
            }
        }
        match listing {
            Listing::Tools | Listing::Prompts => {
                if listing == Listing::Tools {
                    let definition = palisade_filter::pins::Definition::from_tool(&item);
                    listed.definitions.insert(name.clone(), definition);
                }
                if let Some(Value::String(shown)) = item.get_mut("name") {
                    shown.insert_str(0, prefix);
                }
                listed.names.insert(name);
            }
            Listing::Resources => listed.claims.push(name),
            Listing::Templates => {
                let fixed = name.split('{').next().unwrap_or_default();
                // An empty fixed part would claim every URI: it routes nothing.
                if !fixed.is_empty() {
                    listed.claims.push(fixed.to_owned());
                }
            }
        }
        listed.items.push(item);
    }
    (listed, noticed)
}

/// Which upstream serves which URI, computed from the listings in
/// configuration order.
#[derive(Debug, Default)]
pub(super) struct Routes {
    exact: HashMap<String, usize>,
    /// (fixed prefix, upstream); no two upstreams' prefixes overlap.
    templates: Vec<(String, usize)>,
    /// Claims refused: (upstream that claimed, what, upstream that owns it).
    pub refused: Vec<(usize, String, usize)>,
}

impl Routes {
    /// `resources` and `templates` hold each upstream's claims, by upstream
    /// index (the configuration's order).
    pub(super) fn compute(
        resources: &[(usize, &[String])],
        templates: &[(usize, &[String])],
    ) -> Self {
        let mut routes = Routes::default();
        for (upstream, prefixes) in templates {
            for prefix in prefixes.iter() {
                let owner = routes
                    .templates
                    .iter()
                    .find(|(p, owner)| {
                        owner != upstream
                            && (p.starts_with(prefix.as_str()) || prefix.starts_with(p.as_str()))
                    })
                    .map(|(_, owner)| *owner);
                match owner {
                    Some(owner) => routes.refused.push((*upstream, prefix.clone(), owner)),
                    None => {
                        if !routes
                            .templates
                            .iter()
                            .any(|(p, o)| p == prefix && o == upstream)
                        {
                            routes.templates.push((prefix.clone(), *upstream));
                        }
                    }
                }
            }
        }
        for (upstream, uris) in resources {
            for uri in uris.iter() {
                let exact_owner = routes.exact.get(uri).copied().filter(|o| o != upstream);
                // A URI inside the template of an upstream before it belongs to that one.
                let template_owner = routes
                    .templates
                    .iter()
                    .find(|(p, owner)| owner < upstream && uri.starts_with(p.as_str()))
                    .map(|(_, owner)| *owner);
                match exact_owner.or(template_owner) {
                    Some(owner) => routes.refused.push((*upstream, uri.clone(), owner)),
                    None => {
                        routes.exact.insert(uri.clone(), *upstream);
                    }
                }
            }
        }
        routes
    }

    /// The upstream that serves `uri`: the one that listed it, else the one
    /// whose template's fixed part is the longest that `uri` starts with.
    pub(super) fn route(&self, uri: &str) -> Option<usize> {
        if let Some(upstream) = self.exact.get(uri) {
            return Some(*upstream);
        }
        self.templates
            .iter()
            .filter(|(prefix, _)| uri.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, upstream)| *upstream)
    }
}

/// Every upstream's listings for one session.
#[derive(Debug, Default)]
pub(super) struct Catalog {
    listed: HashMap<(usize, Listing), Arc<Listed>>,
    routes: Option<Arc<Routes>>,
}

impl Catalog {
    pub(super) fn get(&self, upstream: usize, listing: Listing) -> Option<Arc<Listed>> {
        self.listed.get(&(upstream, listing)).cloned()
    }

    pub(super) fn store(&mut self, upstream: usize, listing: Listing, listed: Listed) {
        self.listed.insert((upstream, listing), Arc::new(listed));
        self.routes = None;
    }

    /// `upstream` said a list changed: it is read again when next needed.
    pub(super) fn forget(&mut self, upstream: usize, listings: &[Listing]) {
        for listing in listings {
            self.listed.remove(&(upstream, *listing));
        }
        self.routes = None;
    }

    /// The routes, computed from the resource listings of `upstreams` (in
    /// configuration order) when a listing changed since last time. The
    /// second value is true when they were computed now (so their refused
    /// claims are new).
    pub(super) fn routes(&mut self, upstreams: usize) -> (Arc<Routes>, bool) {
        // The claims are cloned out so the routes can borrow them while the
        // catalog keeps its own.
        if let Some(routes) = &self.routes {
            return (Arc::clone(routes), false);
        }
        let collect = |listing| -> Vec<(usize, Arc<Listed>)> {
            (0..upstreams)
                .filter_map(|u| self.get(u, listing).map(|l| (u, l)))
                .collect()
        };
        let (resources, templates) = (collect(Listing::Resources), collect(Listing::Templates));
        let claims = |c: &[(usize, Arc<Listed>)]| -> Vec<(usize, Vec<String>)> {
            c.iter().map(|(u, l)| (*u, l.claims.clone())).collect()
        };
        let (resources, templates) = (claims(&resources), claims(&templates));
        let r: Vec<(usize, &[String])> =
            resources.iter().map(|(u, c)| (*u, c.as_slice())).collect();
        let t: Vec<(usize, &[String])> =
            templates.iter().map(|(u, c)| (*u, c.as_slice())).collect();
        let routes = Arc::new(Routes::compute(&r, &t));
        self.routes = Some(Arc::clone(&routes));
        (routes, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_judged() {
        let check = |name: &str, expected: Option<ListingFinding>| {
            assert_eq!(judge_name(name), expected, "{name:?}");
        };
        check("read_file", None);
        check("files.read-v2", None);
        check("", Some(ListingFinding::Unnamed));
        check("evil\u{1b}[2J", Some(ListingFinding::ControlCharacters));
        check("bell\u{7}", Some(ListingFinding::ControlCharacters));
        check("two\nlines", Some(ListingFinding::ControlCharacters));
        check(
            "read\u{200b}_file",
            Some(ListingFinding::InvisibleCharacters),
        );
        check(
            "admin\u{202e}eliF",
            Some(ListingFinding::InvisibleCharacters),
        );
        check("tag\u{e0041}", Some(ListingFinding::InvisibleCharacters));
        check("../../etc/passwd", Some(ListingFinding::Nonstandard));
        check("with space", Some(ListingFinding::Nonstandard));
        check("café", Some(ListingFinding::Nonstandard));
        check(&"x".repeat(129), Some(ListingFinding::Nonstandard));
        check(&"x".repeat(128), None);
    }

    fn tools(names: &[&str]) -> Vec<Value> {
        names
            .iter()
            .map(|n| json!({ "name": n, "inputSchema": {} }))
            .collect()
    }

    #[test]
    fn hidden_names_are_neither_shown_nor_callable() {
        let raw = tools(&["read", "Write", "write", "bad\u{7}", "../up", "ok"]);
        let (listed, noticed) = build(Listing::Tools, "f__", raw.clone(), false);
        let shown: Vec<&str> = listed
            .items
            .iter()
            .filter_map(|i| i["name"].as_str())
            .collect();
        assert_eq!(shown, ["f__read", "f__../up", "f__ok"]);
        assert!(listed.names.contains("read") && !listed.names.contains("write"));
        let hidden: Vec<(&str, ListingFinding)> = noticed
            .iter()
            .filter(|n| n.hidden)
            .map(|n| (n.name.as_str(), n.finding))
            .collect();
        assert_eq!(
            hidden,
            [
                ("Write", ListingFinding::CaseCollision),
                ("write", ListingFinding::CaseCollision),
                ("bad\u{7}", ListingFinding::ControlCharacters),
            ]
        );
        assert!(noticed.iter().any(|n| n.name == "../up" && !n.hidden));
        // Strict: nonstandard names are hidden too.
        let (strict, _) = build(Listing::Tools, "f__", raw, true);
        assert!(!strict.names.contains("../up"));
    }

    #[test]
    fn ownership_follows_configuration_order_not_arrival() {
        let a_uris = vec!["file:///notes.txt".to_owned()];
        let b_uris = vec!["file:///notes.txt".to_owned(), "b://own".to_owned()];
        let a_templates = vec!["file:///".to_owned()];
        let b_templates = vec!["file:///etc/".to_owned(), "b://t/".to_owned()];
        // The same claims, given in either order, route the same way.
        for order in [[0, 1], [1, 0]] {
            let pick = |u: usize| -> (&[String], &[String]) {
                if u == 0 {
                    (&a_uris, &a_templates)
                } else {
                    (&b_uris, &b_templates)
                }
            };
            let mut resources: Vec<(usize, &[String])> =
                order.iter().map(|u| (*u, pick(*u).0)).collect();
            let mut templates: Vec<(usize, &[String])> =
                order.iter().map(|u| (*u, pick(*u).1)).collect();
            // The catalog always hands claims over in configuration order.
            resources.sort_by_key(|(u, _)| *u);
            templates.sort_by_key(|(u, _)| *u);
            let routes = Routes::compute(&resources, &templates);
            assert_eq!(routes.route("file:///notes.txt"), Some(0));
            // The longer template of the later upstream does not win the space.
            assert_eq!(routes.route("file:///etc/passwd"), Some(0));
            assert_eq!(routes.route("b://own"), Some(1));
            assert_eq!(routes.route("b://t/x"), Some(1));
            assert_eq!(routes.route("c://nobody"), None);
            let refused: Vec<&str> = routes.refused.iter().map(|(_, c, _)| c.as_str()).collect();
            assert_eq!(refused, ["file:///etc/", "file:///notes.txt"]);
        }
    }

    #[test]
    fn one_upstream_may_overlap_itself() {
        let templates = vec!["x://".to_owned(), "x://deep/".to_owned()];
        let routes = Routes::compute(&[], &[(0, &templates)]);
        assert!(routes.refused.is_empty());
        assert_eq!(routes.route("x://deep/1"), Some(0));
    }

    #[test]
    fn forgetting_a_listing_recomputes_the_routes() {
        let mut catalog = Catalog::default();
        let (listed, _) = build(
            Listing::Resources,
            "",
            vec![json!({ "uri": "a://1", "name": "one" })],
            false,
        );
        catalog.store(0, Listing::Resources, listed);
        let (routes, fresh) = catalog.routes(1);
        assert!(fresh && routes.route("a://1") == Some(0));
        assert!(!catalog.routes(1).1);
        catalog.forget(0, &[Listing::Resources]);
        assert_eq!(catalog.routes(1).0.route("a://1"), None);
    }
}
