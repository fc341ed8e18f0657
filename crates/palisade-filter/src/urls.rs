//! URLs in text, found with real parsers (CommonMark, HTML5, WHATWG), checked against an allowlist, and images not allowed taken out.
//!
//! [`find_urls`] reads a text three ways: as markdown with pulldown-cmark
//! (links, images, autolinks, reference definitions, and the raw HTML in
//! it), as HTML with html5ever's tokenizer (the raw HTML of the markdown,
//! and the whole text when it looks like a page), and as prose (bare URLs
//! by scheme). Markdown is read both as CommonMark and as GitHub-flavoured
//! markdown (tables, footnotes), since either may render the text, and what
//! either finds counts.
//!
//! [`check_url`] parses a URL the WHATWG way, as a browser would, so that
//! `https://trusted.com@evil.com`, `http://0x7f.1` or a Unicode host mean
//! here what they mean there, and compares its host with a
//! [`UrlAllowlist`] of registrable domains (by the public suffix list) and
//! exact hosts.
//!
//! [`strip_images`] takes out of a text every image a renderer would fetch
//! without a click (markdown images, raw HTML `<img>` and its kin) whose URL
//! the allowlist does not allow: the way a model is made to send data away
//! in an image URL. Everything else in the text is kept byte for byte.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use html5ever::TokenizerResult;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};
use regex::Regex;
use serde::Serialize;
use url::{Host, Url};

/// Most URLs [`find_urls`] returns: of a text with more, the first ones
/// in the order it reads them (see there).
pub const MAX_URLS: usize = 1000;

/// Schemes that are not dangerous in themselves (the host is still checked).
const SAFE_SCHEMES: [&str; 6] = ["http", "https", "ws", "wss", "ftp", "mailto"];

/// Where in a text a URL was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UrlContext {
    /// A bare URL in prose (or in code, or anywhere else in the text).
    Text,
    /// A CommonMark autolink: `<https://…>`, or `<user@host>` as `mailto:`.
    Autolink,
    /// A markdown link, inline or by reference, or a reference definition.
    MarkdownLink,
    /// A markdown image, inline or by reference.
    MarkdownImage,
    /// A URL of raw HTML that is followed or loaded as a document or
    /// script: `<a href>`, `<link href>`, `<form action>`, `<iframe src>`, …
    HtmlLink,
    /// A URL of raw HTML that a page fetches by itself to show it: `<img
    /// src/srcset>`, `<source src/srcset>`, media, posters, SVG images.
    HtmlImage,
}

/// A URL found in a text, as it is written there (entities and escapes decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundUrl {
    pub raw: String,
    pub context: UrlContext,
}

/// Every URL in `text`, each (raw, context) pair once, at most [`MAX_URLS`].
///
/// Found, in this order: markdown links, images and autolinks as the
/// events come, then reference definitions (used or not), then the URL
/// attributes of the markdown's raw HTML (inline tags and HTML blocks), all
/// of it for CommonMark and then GitHub-flavoured markdown; then the URL
/// attributes of the whole text when it looks like HTML; then bare URLs
/// (`http`, `https`, `ftp`, `ws`, `wss`, `javascript:`, `data:`,
/// `vbscript:`, `file:`). A bare URL already found in another context is
/// not repeated as [`UrlContext::Text`]. A URL inside another one (a
/// redirect parameter) is part of it, not a second URL.
pub fn find_urls(text: &str) -> Vec<FoundUrl> {
    // Every form found below needs a scheme's colon, a tag or a link's
    // bracket: prose without them is not parsed three times for nothing.
    if !text.contains([':', '<', ']']) {
        return Vec::new();
    }
    let mut found = Found::default();
    let mut markdown_html: Vec<String> = Vec::new();
    for options in MARKDOWN_FLAVOURS {
        let html = markdown_urls(text, options, &mut found);
        // Both readings usually see the same raw HTML; it is read once.
        if !markdown_html.contains(&html) {
            html_urls(&html, &mut found);
            markdown_html.push(html);
        }
    }
    if looks_like_html(text) {
        html_urls(text, &mut found);
    }
    bare_urls(text, &mut found);
    found.urls
}

/// The URLs found so far, and what dedupes them.
#[derive(Default)]
struct Found {
    urls: Vec<FoundUrl>,
    seen: HashSet<(String, UrlContext)>,
    /// The raw URLs found in some context other than [`UrlContext::Text`].
    structural: HashSet<String>,
}

impl Found {
    fn is_full(&self) -> bool {
        self.urls.len() >= MAX_URLS
    }

    /// Adds `raw` (without surrounding ASCII whitespace, as browsers read
    /// attributes), unless empty, already there, or the list is full.
    fn add(&mut self, raw: &str, context: UrlContext) {
        let raw = raw.trim_matches(|c: char| c.is_ascii_whitespace());
        if raw.is_empty() || self.is_full() {
            return;
        }
        if context == UrlContext::Text && self.structural.contains(raw) {
            return;
        }
        if self.seen.insert((raw.to_owned(), context)) {
            if context != UrlContext::Text {
                self.structural.insert(raw.to_owned());
            }
            self.urls.push(FoundUrl {
                raw: raw.to_owned(),
                context,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Markdown

/// CommonMark, and GitHub's markdown (tables, footnotes, strikethrough,
/// task lists): the two ways a renderer may read a text.
const MARKDOWN_FLAVOURS: [Options; 2] = [
    Options::empty(),
    Options::ENABLE_TABLES
        .union(Options::ENABLE_FOOTNOTES)
        .union(Options::ENABLE_STRIKETHROUGH)
        .union(Options::ENABLE_TASKLISTS),
];

/// The links, images and autolinks of `text` read as markdown with
/// `options`, and its reference definitions; returns its raw HTML, the
/// fragments one after another.
fn markdown_urls(text: &str, options: Options, found: &mut Found) -> String {
    let parser = Parser::new_ext(text, options);
    let mut definitions: Vec<(usize, String)> = parser
        .reference_definitions()
        .iter()
        .map(|(_, definition)| (definition.span.start, definition.dest.to_string()))
        .collect();
    definitions.sort();
    let mut html = String::new();
    for event in parser {
        if let Event::Start(Tag::Link {
            link_type,
            dest_url,
            ..
        }) = &event
        {
            let (raw, context) = link_url(*link_type, dest_url);
            found.add(&raw, context);
        } else if let Event::Start(Tag::Image { dest_url, .. }) = &event {
            found.add(dest_url, UrlContext::MarkdownImage);
        } else if let Event::Html(fragment) | Event::InlineHtml(fragment) = &event {
            html.push_str(fragment);
            if !fragment.ends_with('\n') {
                html.push('\n');
            }
        }
    }
    for (_, dest) in definitions {
        found.add(&dest, UrlContext::MarkdownLink);
    }
    html
}

/// The URL and context of a markdown link: an email autolink's address
/// as a `mailto:` URL.
fn link_url(link_type: LinkType, dest: &str) -> (String, UrlContext) {
    match link_type {
        LinkType::Autolink => (dest.to_owned(), UrlContext::Autolink),
        LinkType::Email => (format!("mailto:{dest}"), UrlContext::Autolink),
        LinkType::Inline
        | LinkType::Reference
        | LinkType::ReferenceUnknown
        | LinkType::Collapsed
        | LinkType::CollapsedUnknown
        | LinkType::Shortcut
        | LinkType::ShortcutUnknown
        | LinkType::WikiLink { .. } => (dest.to_owned(), UrlContext::MarkdownLink),
    }
}

// ---------------------------------------------------------------------------
// HTML

/// Attributes that hold one URL: element, attribute, context.
const URL_ATTRIBUTES: [(&str, &str, UrlContext); 21] = [
    ("a", "href", UrlContext::HtmlLink),
    ("area", "href", UrlContext::HtmlLink),
    ("link", "href", UrlContext::HtmlLink),
    ("form", "action", UrlContext::HtmlLink),
    ("button", "formaction", UrlContext::HtmlLink),
    ("input", "formaction", UrlContext::HtmlLink),
    ("iframe", "src", UrlContext::HtmlLink),
    ("frame", "src", UrlContext::HtmlLink),
    ("embed", "src", UrlContext::HtmlLink),
    ("object", "data", UrlContext::HtmlLink),
    ("script", "src", UrlContext::HtmlLink),
    ("img", "src", UrlContext::HtmlImage),
    // An HTML parser reads `<image>` as `<img>`; in SVG it is an image by `href`.
    ("image", "src", UrlContext::HtmlImage),
    ("image", "href", UrlContext::HtmlImage),
    ("image", "xlink:href", UrlContext::HtmlImage),
    ("source", "src", UrlContext::HtmlImage),
    ("input", "src", UrlContext::HtmlImage),
    ("video", "poster", UrlContext::HtmlImage),
    ("video", "src", UrlContext::HtmlImage),
    ("audio", "src", UrlContext::HtmlImage),
    ("track", "src", UrlContext::HtmlImage),
];

/// Elements whose `srcset` lists image candidates.
const SRCSET_ELEMENTS: [&str; 3] = ["img", "image", "source"];

/// A start tag as html5ever's tokenizer read it: lowercase names, decoded values.
#[derive(Debug)]
struct StartTag {
    name: String,
    attributes: Vec<(String, String)>,
}

/// The URLs of the start tags of `html`.
fn html_urls(html: &str, found: &mut Found) {
    for tag in start_tags(html) {
        for (url, context) in tag_urls(&tag) {
            found.add(&url, context);
        }
    }
}

/// The start tags of `html`, read by html5ever's tokenizer alone. Without
/// a tree builder no element switches the tokenizer to raw text, so tags
/// written inside `<script>` or `<textarea>` count too: more URLs, never fewer.
fn start_tags(html: &str) -> Vec<StartTag> {
    let tokenizer = Tokenizer::new(StartTags::default(), TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    // The sink never stops the tokenizer, so it reads all of the input.
    match tokenizer.feed(&input) {
        TokenizerResult::Done
        | TokenizerResult::Script(())
        | TokenizerResult::EncodingIndicator(_) => {}
    }
    tokenizer.end();
    tokenizer.sink.tags.take()
}

/// A token sink that keeps the start tags.
#[derive(Default)]
struct StartTags {
    tags: RefCell<Vec<StartTag>>,
}

impl TokenSink for StartTags {
    type Handle = ();

    fn process_token(&self, token: Token, _line_number: u64) -> TokenSinkResult<()> {
        if let Token::TagToken(tag) = token
            && tag.kind == TagKind::StartTag
        {
            let attributes = tag
                .attrs
                .iter()
                .map(|attribute| {
                    (
                        attribute.name.local.to_string(),
                        attribute.value.to_string(),
                    )
                })
                .collect();
            self.tags.borrow_mut().push(StartTag {
                name: tag.name.to_string(),
                attributes,
            });
        }
        TokenSinkResult::Continue
    }
}

/// The URLs a start tag holds, with their contexts: URL attributes, and
/// every candidate of a `srcset`.
fn tag_urls(tag: &StartTag) -> Vec<(String, UrlContext)> {
    let mut urls = Vec::new();
    for (attribute, value) in &tag.attributes {
        if let Some(context) = url_attribute(&tag.name, attribute) {
            urls.push((value.clone(), context));
        } else if attribute == "srcset" && SRCSET_ELEMENTS.contains(&tag.name.as_str()) {
            urls.extend(
                srcset_urls(value)
                    .into_iter()
                    .map(|url| (url.to_owned(), UrlContext::HtmlImage)),
            );
        }
    }
    urls
}

/// The context of the URL in `attribute` of `element`, if it holds one.
fn url_attribute(element: &str, attribute: &str) -> Option<UrlContext> {
    URL_ATTRIBUTES
        .iter()
        .find(|(e, a, _)| *e == element && *a == attribute)
        .map(|(_, _, context)| *context)
}

/// The URLs of a `srcset` value, by the HTML standard's algorithm: a
/// candidate is a run of non-whitespace (trailing commas are not part of
/// it) followed by descriptors up to a comma outside parentheses.
fn srcset_urls(srcset: &str) -> Vec<&str> {
    let is_space = |c: char| c.is_ascii_whitespace();
    let mut urls = Vec::new();
    let mut rest = srcset;
    loop {
        rest = rest.trim_start_matches(|c: char| is_space(c) || c == ',');
        if rest.is_empty() {
            return urls;
        }
        let url_end = rest.find(is_space).unwrap_or(rest.len());
        let (url, after) = rest.split_at(url_end);
        let trimmed = url.trim_end_matches(',');
        urls.push(trimmed);
        rest = if trimmed.len() < url.len() {
            after
        } else {
            skip_descriptors(after)
        };
    }
}

/// What follows a candidate's descriptors: the text after the first comma
/// outside parentheses, or nothing.
fn skip_descriptors(descriptors: &str) -> &str {
    let mut in_parentheses = false;
    for (at, c) in descriptors.char_indices() {
        match c {
            '(' => in_parentheses = true,
            ')' => in_parentheses = false,
            ',' if !in_parentheses => return descriptors.get(at + 1..).unwrap_or_default(),
            _ => {}
        }
    }
    ""
}

/// Strings that mark a text as an HTML page wherever they are.
static HTML_MARKERS: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(["<!doctype", "<html", "<body"])
        .ok()
});

/// Whether `text` is HTML rather than markdown or prose: it starts (after
/// whitespace) with a tag or a declaration, or holds `<!doctype`, `<html`
/// or `<body` anywhere.
fn looks_like_html(text: &str) -> bool {
    let head = text.trim_start().as_bytes();
    let starts_with_tag = head.first() == Some(&b'<')
        && head
            .get(1)
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'!');
    starts_with_tag
        || LazyLock::force(&HTML_MARKERS)
            .as_ref()
            .is_some_and(|markers| markers.is_match(text))
}

// ---------------------------------------------------------------------------
// Bare URLs

/// The schemes of bare URLs: network ones with `//`, and the dangerous ones.
static BARE_SCHEME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:https?|ftp|wss?)://|(?:javascript|data|vbscript|file):").ok()
});

/// Every bare URL of `text`: from a scheme to whitespace, a control
/// character, `<`, `>`, `"`, a backtick or an unopened `]`, less trailing
/// punctuation and unbalanced closing parentheses.
fn bare_urls(text: &str, found: &mut Found) {
    let Some(scheme) = LazyLock::force(&BARE_SCHEME).as_ref() else {
        return;
    };
    let mut from = 0;
    while !found.is_full() {
        let Some(m) = scheme.find_at(text, from) else {
            return;
        };
        let end = bare_url_end(text, m.start());
        if let Some(raw) = text.get(m.start()..end)
            && raw.len() > m.len()
            && !continues_a_word(text, m.start())
        {
            found.add(raw, UrlContext::Text);
        }
        from = end.max(m.end());
    }
}

/// Whether the scheme at `start` is the end of a longer word or scheme
/// (`xhttp://`, `git+https://`, `metadata:`).
fn continues_a_word(text: &str, start: usize) -> bool {
    start
        .checked_sub(1)
        .and_then(|before| text.as_bytes().get(before))
        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Where the bare URL starting at `start` ends.
fn bare_url_end(text: &str, start: usize) -> usize {
    let rest = text.get(start..).unwrap_or_default();
    let mut end = rest.len();
    let mut open_brackets = 0usize;
    for (at, c) in rest.char_indices() {
        let stops = c.is_whitespace()
            || c.is_control()
            || matches!(c, '<' | '>' | '"' | '`')
            || (c == ']' && open_brackets == 0);
        if stops {
            end = at;
            break;
        }
        match c {
            '[' => open_brackets += 1,
            ']' => open_brackets -= 1,
            _ => {}
        }
    }
    start + without_trailing_punctuation(rest.get(..end).unwrap_or_default())
}

/// The length of `url` less the punctuation that ends a sentence rather
/// than the URL, and closing parentheses that no opening one matches.
fn without_trailing_punctuation(url: &str) -> usize {
    let opening = url.matches('(').count();
    let mut closing = url.matches(')').count();
    let mut end = url.len();
    while let Some(last) = url.get(..end).and_then(|kept| kept.chars().next_back()) {
        let trailing = match last {
            '.' | ',' | ':' | ';' | '!' | '?' | '\'' | '*' | '_' | '~' | '\\' => true,
            ')' => closing > opening,
            _ => false,
        };
        if !trailing {
            break;
        }
        if last == ')' {
            closing -= 1;
        }
        end -= last.len_utf8();
    }
    end
}

// ---------------------------------------------------------------------------
// Checks

/// The hosts URLs may go to: registrable domains (`example.com`, which
/// allows it and every subdomain) and exact hosts (`api.example.com`, or a
/// single label like `localhost`), kept as the WHATWG host parser writes
/// them (lowercase, punycode, no root dot).
#[derive(Debug, Clone, Default)]
pub struct UrlAllowlist {
    /// Registrable domains, each allowing itself and its subdomains.
    domains: BTreeSet<String>,
    /// Hosts allowed exactly.
    hosts: BTreeSet<String>,
}

impl UrlAllowlist {
    /// The allowlist of `entries`. An entry that is not a host name, is an
    /// IP address, holds a wildcard or is a public suffix (`co.uk`,
    /// `github.io`: it would allow the sites of many owners) is an error
    /// naming it.
    pub fn new(entries: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self, String> {
        let mut allowlist = Self::default();
        for entry in entries {
            let entry = entry.as_ref();
            match allowlist_entry(entry) {
                Ok(AllowlistEntry::Domain(domain)) => allowlist.domains.insert(domain),
                Ok(AllowlistEntry::Host(host)) => allowlist.hosts.insert(host),
                Err(why) => return Err(format!("URL allowlist entry {entry:?} {why}")),
            };
        }
        Ok(allowlist)
    }

    /// Whether URLs may go to `host`: it is an allowed host, or its
    /// registrable domain is an allowed domain. IP literals never are.
    pub fn allows_host(&self, host: &Host<&str>) -> bool {
        match host {
            Host::Domain(name) => {
                let Some(name) = normalized_domain(name) else {
                    return false;
                };
                self.hosts.contains(&name)
                    || psl::domain_str(&name).is_some_and(|domain| self.domains.contains(domain))
            }
            Host::Ipv4(_) | Host::Ipv6(_) => false,
        }
    }

    /// Whether the allowlist has no entries (so [`check_url`] checks no host).
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.hosts.is_empty()
    }
}

/// What an allowlist entry allows.
enum AllowlistEntry {
    Domain(String),
    Host(String),
}

/// Reads one allowlist entry; the error says what is wrong with it.
fn allowlist_entry(entry: &str) -> Result<AllowlistEntry, &'static str> {
    let entry = entry.trim();
    if entry.contains('*') {
        return Err("has a wildcard: `example.com` already allows every subdomain");
    }
    let host = match Host::parse(entry) {
        Ok(Host::Domain(name)) => name,
        Ok(Host::Ipv4(_) | Host::Ipv6(_)) => {
            return Err("is an IP address, which is never allowed");
        }
        Err(_) => return Err("is not a host name"),
    };
    let host = without_root_dot(&host);
    if host.is_empty() {
        return Err("is not a host name");
    }
    match psl::domain_str(host) {
        Some(domain) if domain == host => Ok(AllowlistEntry::Domain(host.to_owned())),
        Some(_) => Ok(AllowlistEntry::Host(host.to_owned())),
        None if is_public_suffix(host) => {
            Err("is a public suffix, which would allow the sites of many owners")
        }
        None => Ok(AllowlistEntry::Host(host.to_owned())),
    }
}

/// Whether `host` is itself a rule of the public suffix list.
fn is_public_suffix(host: &str) -> bool {
    psl::suffix(host.as_bytes())
        .is_some_and(|suffix| suffix.is_known() && suffix.as_bytes() == host.as_bytes())
}

/// `name` as the WHATWG host parser writes a domain (IDNA, lowercase),
/// without a root dot; `None` if it is not a domain.
fn normalized_domain(name: &str) -> Option<String> {
    match Host::parse(name) {
        Ok(Host::Domain(domain)) => Some(without_root_dot(&domain).to_owned()),
        Ok(Host::Ipv4(_) | Host::Ipv6(_)) | Err(_) => None,
    }
}

/// `name` without the trailing dot of a fully qualified name.
fn without_root_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// The registrable domain of a host name by the public suffix list
/// (`a.b.example.co.uk` → `example.co.uk`), in ASCII (punycode), or `None`
/// for an IP address, a single label or a bare public suffix.
pub fn registrable_domain(host: &str) -> Option<String> {
    let name = normalized_domain(host)?;
    psl::domain_str(&name).map(str::to_owned)
}

/// What is wrong with a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not parsable as a URL at all (raw kept for the message). A relative
    /// reference (`/path`, `img.png`, `//host/x`) is not a URL either.
    Unparsable,
    /// `javascript:`, `data:`, `vbscript:`, `file:` and any scheme other
    /// than http, https, ws, wss, ftp and mailto.
    DangerousScheme { scheme: String },
    /// `user:password@` or `user@` before the host (the
    /// `https://allowed.com@evil.com` trick).
    Userinfo,
    /// The host is an IP literal (any notation the WHATWG parser turns into
    /// one: decimal, hex, octal IPv4, IPv6).
    IpLiteral { host: String },
    /// The host's registrable domain (or the host itself, when it has none)
    /// is not on the allowlist; `domain` is what was compared.
    NotAllowlisted { domain: String },
}

impl UrlProblem {
    /// The problem's stable code, as in findings.
    pub fn code(&self) -> &'static str {
        match self {
            UrlProblem::Unparsable => "url.unparsable",
            UrlProblem::DangerousScheme { .. } => "url.dangerous-scheme",
            UrlProblem::Userinfo => "url.userinfo",
            UrlProblem::IpLiteral { .. } => "url.ip-literal",
            UrlProblem::NotAllowlisted { .. } => "url.not-allowlisted",
        }
    }
}

/// Parses `raw` the WHATWG way and lists what is wrong with it under
/// `allow`. An empty allowlist means no host check (only the
/// scheme/userinfo/IP checks).
///
/// An IP literal is reported as [`UrlProblem::IpLiteral`] only, never also
/// as not allowlisted. A URL without a host (`mailto:`, `data:`) has no
/// host to check.
pub fn check_url(raw: &str, allow: &UrlAllowlist) -> (Option<Url>, Vec<UrlProblem>) {
    let Ok(url) = Url::parse(raw) else {
        return (None, vec![UrlProblem::Unparsable]);
    };
    let mut problems = Vec::new();
    if !SAFE_SCHEMES.contains(&url.scheme()) {
        problems.push(UrlProblem::DangerousScheme {
            scheme: url.scheme().to_owned(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        problems.push(UrlProblem::Userinfo);
    }
    if let Some(problem) = url.host().and_then(|host| host_problem(&host, allow)) {
        problems.push(problem);
    }
    (Some(url), problems)
}

/// What is wrong with a URL's host, if anything.
fn host_problem(host: &Host<&str>, allow: &UrlAllowlist) -> Option<UrlProblem> {
    match host {
        Host::Ipv4(_) | Host::Ipv6(_) => Some(UrlProblem::IpLiteral {
            host: host.to_string(),
        }),
        Host::Domain(name) => (!allow.is_empty() && !allow.allows_host(host)).then(|| {
            let domain =
                registrable_domain(name).unwrap_or_else(|| without_root_dot(name).to_owned());
            UrlProblem::NotAllowlisted { domain }
        }),
    }
}

/// Whether [`check_url`] finds anything wrong with `raw`.
fn is_blocked(raw: &str, allow: &UrlAllowlist) -> bool {
    !check_url(raw, allow).1.is_empty()
}

// ---------------------------------------------------------------------------
// Image stripping

/// The text with every markdown image (inline and reference-style) and
/// raw HTML `<img>` whose URL is not allowed ([`check_url`] reports any
/// problem) removed; returns the new text and the removed URLs.
///
/// A markdown image becomes its alt text in brackets, `\[alt\]`, every
/// ASCII punctuation character of it backslash-escaped: it reads as plain
/// text whatever the alt text holds, and cannot join with what is around it
/// into a new image (as `!` + `[x](u)` would if the image simply went).
/// A raw HTML tag that loads an image (`<img>`, `<image>`, `<source>`,
/// `<video>`, `<audio>`, `<track>`, `<input>`) with a URL not allowed
/// becomes the same tag without attributes (`<img>`), for the same reason
/// (`<<img src=a>img src=b>`) and so that HTML blocks keep their extent.
/// Raw HTML is read where the markdown has it, and in the whole text when
/// it looks like HTML. Everything else is kept byte for byte. The URLs
/// returned are those that failed the check, each once, in text order.
pub fn strip_images(text: &str, allow: &UrlAllowlist) -> (String, Vec<String>) {
    let mut check = ImageCheck {
        allow,
        verdicts: HashMap::new(),
    };
    let mut edits = Vec::new();
    for options in MARKDOWN_FLAVOURS {
        markdown_image_edits(text, options, &mut check, &mut edits);
    }
    if looks_like_html(text) {
        let mut whole = HtmlSource::default();
        whole.push(text, 0..text.len(), text);
        html_image_edits(&whole, &mut check, &mut edits);
    }
    apply(text, edits)
}

/// The allowlist images are checked against, and what it said of each raw
/// HTML tag so far (each reading of a text sees mostly the same tags).
struct ImageCheck<'a> {
    allow: &'a UrlAllowlist,
    /// Tag text → the URLs of it that are not allowed.
    verdicts: HashMap<String, Vec<String>>,
}

impl ImageCheck<'_> {
    /// Whether a markdown image's URL is not allowed.
    fn blocks(&self, url: &str) -> bool {
        is_blocked(url, self.allow)
    }

    /// The URLs of the image tag `tag_text` that are not allowed.
    fn blocked_urls(&mut self, tag_text: &str) -> Vec<String> {
        if let Some(blocked) = self.verdicts.get(tag_text) {
            return blocked.clone();
        }
        let blocked: Vec<String> = image_urls(tag_text)
            .into_iter()
            .filter(|url| is_blocked(url, self.allow))
            .collect();
        self.verdicts.insert(tag_text.to_owned(), blocked.clone());
        blocked
    }
}

/// A replacement of a range of the text.
#[derive(Debug)]
struct Edit {
    range: Range<usize>,
    replacement: String,
    /// The URLs that made the edit.
    urls: Vec<String>,
}

/// The edits that take the images not allowed out of `text` read as
/// markdown with `options`.
fn markdown_image_edits(
    text: &str,
    options: Options,
    check: &mut ImageCheck,
    edits: &mut Vec<Edit>,
) {
    let mut removing: Option<RemovedImage> = None;
    let mut block: Option<HtmlSource> = None;
    for (event, range) in Parser::new_ext(text, options).into_offset_iter() {
        if let Some(image) = removing.as_mut() {
            if image.take(&event)
                && let Some(done) = removing.take()
            {
                edits.push(done.into_edit());
            }
            continue;
        }
        if let Event::Start(Tag::Image { dest_url, .. }) = &event {
            if check.blocks(dest_url) {
                removing = Some(RemovedImage::new(range, dest_url));
            }
        } else if let Event::InlineHtml(fragment) = &event {
            let mut tag = HtmlSource::default();
            tag.push(fragment, range, text);
            html_image_edits(&tag, check, edits);
        } else if let Event::Start(Tag::HtmlBlock) = &event {
            block = Some(HtmlSource::default());
        } else if let Event::End(TagEnd::HtmlBlock) = &event {
            if let Some(source) = block.take() {
                html_image_edits(&source, check, edits);
            }
        } else if let (Event::Html(fragment) | Event::Text(fragment), Some(source)) =
            (&event, block.as_mut())
        {
            source.push(fragment, range, text);
        }
    }
}

/// A markdown image being taken out: its source range, URL and alt text.
struct RemovedImage {
    range: Range<usize>,
    url: String,
    alt: String,
    /// Images open, counting this one (an image's alt text may hold images).
    depth: usize,
}

impl RemovedImage {
    fn new(range: Range<usize>, url: &str) -> Self {
        Self {
            range,
            url: url.to_owned(),
            alt: String::new(),
            depth: 1,
        }
    }

    /// Takes the next event inside the image; true once the image has ended.
    fn take(&mut self, event: &Event) -> bool {
        if let Event::Start(Tag::Image { .. }) = event {
            self.depth += 1;
        } else if let Event::End(TagEnd::Image) = event {
            self.depth = self.depth.saturating_sub(1);
        } else if let Event::Text(text) | Event::Code(text) = event {
            self.alt.push_str(text);
        } else if let Event::SoftBreak | Event::HardBreak = event {
            self.alt.push(' ');
        }
        self.depth == 0
    }

    fn into_edit(self) -> Edit {
        Edit {
            range: self.range,
            replacement: alt_placeholder(&self.alt),
            urls: vec![self.url],
        }
    }
}

/// `\[alt\]`, with every ASCII punctuation character of `alt` escaped.
fn alt_placeholder(alt: &str) -> String {
    let mut placeholder = String::with_capacity(alt.len() + 4);
    placeholder.push_str("\\[");
    for c in alt.chars() {
        if c.is_ascii_punctuation() {
            placeholder.push('\\');
        }
        placeholder.push(c);
    }
    placeholder.push_str("\\]");
    placeholder
}

/// Raw HTML as the markdown parser hands it over (one inline tag, or the
/// lines of an HTML block), and where each piece of it is in the source.
#[derive(Debug, Default)]
struct HtmlSource {
    text: String,
    pieces: Vec<Piece>,
}

/// A piece of [`HtmlSource::text`] (`len` bytes from `at`) and the source
/// range it came from; `verbatim` when it is that range's text unchanged
/// (a blockquote's `>` stripped from an inline tag's lines is not).
#[derive(Debug)]
struct Piece {
    at: usize,
    len: usize,
    source: Range<usize>,
    verbatim: bool,
}

impl HtmlSource {
    /// Appends `fragment`, which the parser read from `source` of `original`.
    fn push(&mut self, fragment: &str, source: Range<usize>, original: &str) {
        let verbatim = original.get(source.clone()) == Some(fragment);
        self.pieces.push(Piece {
            at: self.text.len(),
            len: fragment.len(),
            source,
            verbatim,
        });
        self.text.push_str(fragment);
    }

    /// The source range of `range` of the text: each end mapped through
    /// its piece, or to the piece's edge when the piece is not verbatim.
    /// A range across lines of a blockquote takes the `>` between them too,
    /// which leaves the block as it was, its lines joined.
    fn source_range(&self, range: &Range<usize>) -> Range<usize> {
        let start = self
            .piece_at(range.start)
            .map(|piece| piece.source_start(range.start));
        let end = range
            .end
            .checked_sub(1)
            .and_then(|last| self.piece_at(last))
            .map(|piece| piece.source_end(range.end));
        let whole_start = self.pieces.first().map_or(0, |piece| piece.source.start);
        let whole_end = self.pieces.last().map_or(0, |piece| piece.source.end);
        start.unwrap_or(whole_start)..end.unwrap_or(whole_end)
    }

    /// The piece holding byte `offset` of the text.
    fn piece_at(&self, offset: usize) -> Option<&Piece> {
        let index = self
            .pieces
            .partition_point(|piece| piece.at + piece.len <= offset);
        self.pieces.get(index).filter(|piece| piece.at <= offset)
    }
}

impl Piece {
    fn source_start(&self, offset: usize) -> usize {
        if self.verbatim {
            self.source.start + (offset - self.at)
        } else {
            self.source.start
        }
    }

    fn source_end(&self, offset: usize) -> usize {
        if self.verbatim {
            self.source.start + (offset - self.at)
        } else {
            self.source.end
        }
    }
}

/// The edits that make the image tags of `source` whose URLs are not
/// allowed bare tags.
fn html_image_edits(source: &HtmlSource, check: &mut ImageCheck, edits: &mut Vec<Edit>) {
    for tag in image_tags(&source.text) {
        let Some(tag_text) = source.text.get(tag.range.clone()) else {
            continue;
        };
        let blocked = check.blocked_urls(tag_text);
        if !blocked.is_empty() {
            edits.push(Edit {
                range: source.source_range(&tag.range),
                replacement: tag.bare(),
                urls: blocked,
            });
        }
    }
}

/// The URLs a page fetches to show the one tag of `tag_text`.
fn image_urls(tag_text: &str) -> Vec<String> {
    start_tags(tag_text)
        .first()
        .map(|tag| {
            tag_urls(tag)
                .into_iter()
                .filter(|(_, context)| *context == UrlContext::HtmlImage)
                .map(|(url, _)| url)
                .collect()
        })
        .unwrap_or_default()
}

/// A start tag found in raw HTML: its range, its name as written, and
/// whether it ends in `/>`.
#[derive(Debug)]
struct ScannedTag {
    range: Range<usize>,
    name: String,
    self_closing: bool,
}

impl ScannedTag {
    /// The tag without its attributes.
    fn bare(&self) -> String {
        let slash = if self.self_closing { "/" } else { "" };
        format!("<{}{slash}>", self.name)
    }
}

/// Whether a tag of this (lowercase) name can make a page fetch an image.
fn is_image_element(name: &str) -> bool {
    SRCSET_ELEMENTS.contains(&name)
        || URL_ATTRIBUTES
            .iter()
            .any(|(element, _, context)| *element == name && *context == UrlContext::HtmlImage)
}

/// The start tags of image elements in `html`, ending where the HTML
/// tokenizer ends them (a `>` outside quoted attribute values). Other start
/// tags are skipped whole, so text inside their attribute values is not
/// taken for tags; comments and end tags are not, which can only find more.
fn image_tags(html: &str) -> Vec<ScannedTag> {
    let mut tags = Vec::new();
    let mut at = 0;
    while let Some(offset) = html.get(at..).and_then(|rest| rest.find('<')) {
        let open = at + offset;
        let Some(name) = start_tag_name(html, open) else {
            at = open + 1;
            continue;
        };
        let Some((end, self_closing)) = start_tag_end(html, open + 1 + name.len()) else {
            // An unterminated tag takes the rest of the input; no tag is in it.
            break;
        };
        if is_image_element(&name.to_ascii_lowercase()) {
            tags.push(ScannedTag {
                range: open..end,
                name: name.to_owned(),
                self_closing,
            });
        }
        at = end;
    }
    tags
}

/// The name of the start tag opened by the `<` at `open`, if it opens one
/// (`<` and an ASCII letter); the name runs to whitespace, `/` or `>`.
fn start_tag_name(html: &str, open: usize) -> Option<&str> {
    let rest = html.get(open + 1..)?;
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let end = rest
        .find(|c: char| is_html_space(c) || c == '/' || c == '>')
        .unwrap_or(rest.len());
    rest.get(..end)
}

/// Where the tokenizer's start-tag states are, after the tag name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagState {
    TagName,
    BeforeAttributeName,
    AttributeName,
    AfterAttributeName,
    BeforeAttributeValue,
    Quoted(u8),
    Unquoted,
    AfterQuotedValue,
    SelfClosing,
}

/// The end (past `>`) of the start tag whose name ends at `from`, and
/// whether it closes itself, by the HTML tokenizer's states; `None` if the
/// input ends first.
fn start_tag_end(html: &str, from: usize) -> Option<(usize, bool)> {
    let mut state = TagState::TagName;
    for (at, &byte) in html.as_bytes().iter().enumerate().skip(from) {
        match next_tag_state(state, byte) {
            Some(next) => state = next,
            None => return Some((at + 1, state == TagState::SelfClosing)),
        }
    }
    None
}

/// The tokenizer's state after `byte` in `state`, or `None` when `byte` is
/// the `>` that ends the tag. (Only ASCII bytes change a state, so reading
/// bytes rather than characters is exact.)
fn next_tag_state(state: TagState, byte: u8) -> Option<TagState> {
    let space = is_html_space(char::from(byte));
    let next = match state {
        TagState::TagName => match byte {
            b'>' => return None,
            b'/' => TagState::SelfClosing,
            _ if space => TagState::BeforeAttributeName,
            _ => TagState::TagName,
        },
        TagState::BeforeAttributeName => match byte {
            b'>' => return None,
            b'/' => TagState::SelfClosing,
            _ if space => TagState::BeforeAttributeName,
            // Anything else, `=` included, starts an attribute name.
            _ => TagState::AttributeName,
        },
        TagState::AttributeName | TagState::AfterAttributeName => match byte {
            b'>' => return None,
            b'/' => TagState::SelfClosing,
            b'=' => TagState::BeforeAttributeValue,
            _ if space => TagState::AfterAttributeName,
            _ => TagState::AttributeName,
        },
        TagState::BeforeAttributeValue => match byte {
            b'>' => return None,
            b'"' | b'\'' => TagState::Quoted(byte),
            _ if space => TagState::BeforeAttributeValue,
            _ => TagState::Unquoted,
        },
        TagState::Quoted(quote) => {
            if byte == quote {
                TagState::AfterQuotedValue
            } else {
                TagState::Quoted(quote)
            }
        }
        TagState::Unquoted => match byte {
            b'>' => return None,
            _ if space => TagState::BeforeAttributeName,
            _ => TagState::Unquoted,
        },
        TagState::AfterQuotedValue | TagState::SelfClosing => match byte {
            b'>' => return None,
            b'/' => TagState::SelfClosing,
            _ if space => TagState::BeforeAttributeName,
            _ => TagState::AttributeName,
        },
    };
    Some(next)
}

/// HTML's whitespace (the tokenizer sees a carriage return as a line feed).
fn is_html_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' ')
}

/// `text` with `edits` made: in order of position, an edit inside an
/// earlier one dropped, one reaching past an earlier one removing the rest
/// of its range too. Returns the text and the URLs of all edits, each once.
fn apply(text: &str, mut edits: Vec<Edit>) -> (String, Vec<String>) {
    edits.sort_by(|a, b| {
        a.range
            .start
            .cmp(&b.range.start)
            .then(b.range.end.cmp(&a.range.end))
    });
    edits.dedup_by(|later, earlier| later.range == earlier.range);
    let mut stripped = String::with_capacity(text.len());
    let mut removed = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor = 0;
    for edit in edits {
        for url in edit.urls {
            if seen.insert(url.clone()) {
                removed.push(url);
            }
        }
        if edit.range.start < cursor {
            cursor = cursor.max(edit.range.end);
            continue;
        }
        stripped.push_str(text.get(cursor..edit.range.start).unwrap_or_default());
        stripped.push_str(&edit.replacement);
        cursor = edit.range.end;
    }
    stripped.push_str(text.get(cursor..).unwrap_or_default());
    (stripped, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(raw: &str, context: UrlContext) -> FoundUrl {
        FoundUrl {
            raw: raw.to_owned(),
            context,
        }
    }

    fn allow(entries: &[&str]) -> UrlAllowlist {
        UrlAllowlist::new(entries).unwrap()
    }

    fn problems(raw: &str, allowlist: &UrlAllowlist) -> Vec<UrlProblem> {
        check_url(raw, allowlist).1
    }

    fn codes(raw: &str) -> Vec<&'static str> {
        problems(raw, &UrlAllowlist::default())
            .iter()
            .map(UrlProblem::code)
            .collect()
    }

    #[test]
    fn every_pattern_builds() {
        assert!(LazyLock::force(&BARE_SCHEME).is_some());
        assert!(LazyLock::force(&HTML_MARKERS).is_some());
    }

    #[test]
    fn inline_and_reference_links_and_images() {
        let text = "See [the docs](https://docs.example.com/a) and [x][ref], [Ref][], [ref].\n\
                    ![logo](https://cdn.example.com/logo.png) ![chart][img]\n\n\
                    [ref]: https://ref.example.com/r \"title\"\n\
                    [img]: <https://img.example.com/c.png>\n\
                    [unused]: https://unused.example.com/\n";
        assert_eq!(
            find_urls(text),
            [
                url("https://docs.example.com/a", UrlContext::MarkdownLink),
                url("https://ref.example.com/r", UrlContext::MarkdownLink),
                url(
                    "https://cdn.example.com/logo.png",
                    UrlContext::MarkdownImage
                ),
                url("https://img.example.com/c.png", UrlContext::MarkdownImage),
                url("https://img.example.com/c.png", UrlContext::MarkdownLink),
                url("https://unused.example.com/", UrlContext::MarkdownLink),
            ]
        );
    }

    #[test]
    fn autolinks() {
        let text = "Mail <jane@example.com> or visit <https://example.com/x?y=1>.";
        assert_eq!(
            find_urls(text),
            [
                url("mailto:jane@example.com", UrlContext::Autolink),
                url("https://example.com/x?y=1", UrlContext::Autolink),
            ]
        );
    }

    #[test]
    fn links_with_dangerous_schemes_and_escapes() {
        let text = r"[a](javascript:alert(1)) [b](https://example.com/a\_b) [c](<https://example.com/with space>)";
        let links: Vec<FoundUrl> = find_urls(text)
            .into_iter()
            .filter(|f| f.context != UrlContext::Text)
            .collect();
        assert_eq!(
            links,
            [
                url("javascript:alert(1)", UrlContext::MarkdownLink),
                url("https://example.com/a_b", UrlContext::MarkdownLink),
                url("https://example.com/with space", UrlContext::MarkdownLink),
            ]
        );
    }

    #[test]
    fn raw_html_in_markdown() {
        let text = "Text <img src=\"https://img.example.com/a.png\" alt=x> inline.\n\n\
                    <div>\n<a href='https://link.example.com/'>l</a>\n\
                    <iframe src=https://frame.example.com/></iframe>\n\
                    <form action=\"https://form.example.com/post\"></form>\n\
                    <link href=\"https://style.example.com/s.css\">\n\
                    <picture><source srcset=\"https://src.example.com/a.webp\"><img\n\
                    src=\"https://img.example.com/b.png\"></picture>\n</div>\n";
        assert_eq!(
            find_urls(text),
            [
                url("https://img.example.com/a.png", UrlContext::HtmlImage),
                url("https://link.example.com/", UrlContext::HtmlLink),
                url("https://frame.example.com/", UrlContext::HtmlLink),
                url("https://form.example.com/post", UrlContext::HtmlLink),
                url("https://style.example.com/s.css", UrlContext::HtmlLink),
                url("https://src.example.com/a.webp", UrlContext::HtmlImage),
                url("https://img.example.com/b.png", UrlContext::HtmlImage),
            ]
        );
    }

    #[test]
    fn every_srcset_candidate() {
        let text = "<img srcset=\"https://a.example.com/1.png 1x, https://a.example.com/2.png 2x,\
                    https://a.example.com/w,400.png 400w\" src=x.png>";
        assert_eq!(
            find_urls(text),
            [
                url("https://a.example.com/1.png", UrlContext::HtmlImage),
                url("https://a.example.com/2.png", UrlContext::HtmlImage),
                url("https://a.example.com/w,400.png", UrlContext::HtmlImage),
                url("x.png", UrlContext::HtmlImage),
            ]
        );
        assert_eq!(
            srcset_urls("a.png,b.png 2x, c.png (x, y), d.png"),
            ["a.png,b.png", "c.png", "d.png"]
        );
        assert_eq!(srcset_urls("  ,, "), Vec::<&str>::new());
    }

    #[test]
    fn entities_in_attributes_are_decoded() {
        let text = "<a href=\"javascript&colon;alert(1)\">x</a> <img src=\"https:&#x2F;&#x2F;evil.net/p\">";
        let found = find_urls(text);
        assert!(found.contains(&url("javascript:alert(1)", UrlContext::HtmlLink)));
        assert!(found.contains(&url("https://evil.net/p", UrlContext::HtmlImage)));
    }

    #[test]
    fn a_whole_html_page() {
        let page = "<!DOCTYPE html><html><head><link rel=icon href=/favicon.ico></head>\n\
                    <body>\n\n    <img src=\"https://img.example.com/indented.png\">\n\
                    <svg><image href=\"https://svg.example.com/i.png\"/></svg>\n\
                    <video poster=https://poster.example.com/p.jpg></video></body></html>";
        let found = find_urls(page);
        for expected in [
            url("/favicon.ico", UrlContext::HtmlLink),
            url(
                "https://img.example.com/indented.png",
                UrlContext::HtmlImage,
            ),
            url("https://svg.example.com/i.png", UrlContext::HtmlImage),
            url("https://poster.example.com/p.jpg", UrlContext::HtmlImage),
        ] {
            assert!(found.contains(&expected), "{expected:?} in {found:?}");
        }
        assert!(!found.iter().any(|f| f.context == UrlContext::Text));
    }

    #[test]
    fn bare_urls_in_prose() {
        let text = "Go to https://example.com/a_(b). Or (see http://example.org/x), \
                    'ftp://files.example.com/f.txt'! wss://ws.example.com/s; \
                    HTTPS://UPPER.EXAMPLE.COM and javascript:alert(document.cookie) \
                    or data:text/html;base64,PHNjcmlwdD4= and file:///etc/passwd.";
        let raws: Vec<String> = find_urls(text).into_iter().map(|f| f.raw).collect();
        assert_eq!(
            raws,
            [
                "https://example.com/a_(b)",
                "http://example.org/x",
                "ftp://files.example.com/f.txt",
                "wss://ws.example.com/s",
                "HTTPS://UPPER.EXAMPLE.COM",
                "javascript:alert(document.cookie)",
                "data:text/html;base64,PHNjcmlwdD4=",
                "file:///etc/passwd",
            ]
        );
    }

    #[test]
    fn not_bare_urls() {
        for text in [
            "javascript: is a language",
            "the data: 42",
            "metadata:x",
            "xhttp://example.com",
            "https:// alone",
            "see file: notes.txt",
        ] {
            assert_eq!(find_urls(text), [], "{text}");
        }
        // A URL inside another is part of it.
        assert_eq!(
            find_urls("https://a.example.com/?next=https://b.example.com/"),
            [url(
                "https://a.example.com/?next=https://b.example.com/",
                UrlContext::Text
            )]
        );
    }

    #[test]
    fn a_bare_url_in_link_text_is_its_own() {
        let text = "[https://shown.example.com](https://real.example.net/x)";
        assert_eq!(
            find_urls(text),
            [
                url("https://real.example.net/x", UrlContext::MarkdownLink),
                url("https://shown.example.com", UrlContext::Text),
            ]
        );
    }

    #[test]
    fn deduplicated_and_capped() {
        let text = "https://a.example.com/ https://a.example.com/ [x](https://a.example.com/)";
        assert_eq!(
            find_urls(text),
            [url("https://a.example.com/", UrlContext::MarkdownLink)]
        );
        let many: String = (0..MAX_URLS + 500)
            .map(|i| format!("https://h{i}.example.com/ "))
            .collect();
        let found = find_urls(&many);
        assert_eq!(found.len(), MAX_URLS);
        assert_eq!(
            found[MAX_URLS - 1].raw,
            format!("https://h{}.example.com/", MAX_URLS - 1)
        );
    }

    #[test]
    fn userinfo_trick() {
        let allowlist = allow(&["trusted.com"]);
        assert_eq!(
            problems("https://trusted.com@evil.com/x", &allowlist),
            [
                UrlProblem::Userinfo,
                UrlProblem::NotAllowlisted {
                    domain: "evil.com".to_owned()
                }
            ]
        );
        assert_eq!(
            problems("https://user:pw@trusted.com/", &allowlist),
            [UrlProblem::Userinfo]
        );
        assert_eq!(problems("https://trusted.com/ok", &allowlist), []);
    }

    #[test]
    fn ip_literals_in_every_notation() {
        for (raw, host) in [
            ("http://0x7f.1/", "127.0.0.1"),
            ("http://2130706433/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://127.1/", "127.0.0.1"),
            ("http://[::1]/", "[::1]"),
            (
                "https://[::ffff:169.254.169.254]/latest",
                "[::ffff:a9fe:a9fe]",
            ),
        ] {
            let expected = [UrlProblem::IpLiteral {
                host: host.to_owned(),
            }];
            assert_eq!(problems(raw, &UrlAllowlist::default()), expected, "{raw}");
            assert_eq!(problems(raw, &allow(&["example.com"])), expected, "{raw}");
        }
    }

    #[test]
    fn dangerous_schemes() {
        assert_eq!(codes("javascript:alert(1)"), ["url.dangerous-scheme"]);
        assert_eq!(codes("JavaScript:alert(1)"), ["url.dangerous-scheme"]);
        assert_eq!(
            codes("data:text/html,<script>alert(1)</script>"),
            ["url.dangerous-scheme"]
        );
        assert_eq!(codes("vbscript:msgbox"), ["url.dangerous-scheme"]);
        assert_eq!(codes("file:///etc/passwd"), ["url.dangerous-scheme"]);
        assert_eq!(codes("gopher://example.com/"), ["url.dangerous-scheme"]);
        assert_eq!(
            problems("data:,x", &UrlAllowlist::default()),
            [UrlProblem::DangerousScheme {
                scheme: "data".to_owned()
            }]
        );
        for safe in [
            "https://example.com/",
            "http://example.com",
            "wss://example.com/s",
            "ftp://example.com/f",
            "mailto:jane@example.com",
        ] {
            assert_eq!(codes(safe), Vec::<&str>::new(), "{safe}");
        }
    }

    #[test]
    fn unparsable() {
        for raw in [
            "",
            "not a url",
            "/relative/path",
            "//evil.net/x",
            "img.png",
            "https://exa mple.com/",
            "http://[::1/",
        ] {
            let (parsed, found) = check_url(raw, &UrlAllowlist::default());
            assert!(parsed.is_none(), "{raw}");
            assert_eq!(found, [UrlProblem::Unparsable], "{raw}");
        }
        assert_eq!(UrlProblem::Unparsable.code(), "url.unparsable");
    }

    #[test]
    fn registrable_domains() {
        assert_eq!(
            registrable_domain("a.b.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(
            registrable_domain("WWW.Example.COM.").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            registrable_domain("user.github.io").as_deref(),
            Some("user.github.io")
        );
        assert_eq!(
            registrable_domain("bücher.example.de").as_deref(),
            Some("example.de")
        );
        assert_eq!(
            registrable_domain("www.bücher.de").as_deref(),
            Some("xn--bcher-kva.de")
        );
        for none in [
            "co.uk",
            "com",
            "localhost",
            "127.0.0.1",
            "0x7f.1",
            "[::1]",
            "",
            "a b",
        ] {
            assert_eq!(registrable_domain(none), None, "{none}");
        }
        let (parsed, _) = check_url("https://a.b.example.co.uk/x", &UrlAllowlist::default());
        let host = parsed.unwrap().host_str().map(str::to_owned).unwrap();
        assert_eq!(registrable_domain(&host).as_deref(), Some("example.co.uk"));
    }

    #[test]
    fn allowlist_domains_and_hosts() {
        let allowlist = allow(&["example.com", "api.partner.org", "localhost"]);
        assert!(!allowlist.is_empty());
        for allowed in [
            "https://example.com/",
            "https://cdn.example.com/x",
            "https://a.b.EXAMPLE.com./",
            "https://api.partner.org/v1",
            "http://localhost:8080/",
        ] {
            assert_eq!(problems(allowed, &allowlist), [], "{allowed}");
        }
        for (blocked, domain) in [
            ("https://example.com.evil.net/", "evil.net"),
            ("https://notexample.com/", "notexample.com"),
            ("https://www.partner.org/", "partner.org"),
            ("https://partner.org/", "partner.org"),
            ("http://intranet/", "intranet"),
        ] {
            assert_eq!(
                problems(blocked, &allowlist),
                [UrlProblem::NotAllowlisted {
                    domain: domain.to_owned()
                }],
                "{blocked}"
            );
        }
        assert!(!allowlist.allows_host(&Host::Ipv4(std::net::Ipv4Addr::LOCALHOST)));
        assert!(allowlist.allows_host(&Host::Domain("CDN.Example.com")));
    }

    #[test]
    fn allowlist_compares_after_idna() {
        let unicode_entry = allow(&["bücher.de"]);
        assert_eq!(problems("https://xn--bcher-kva.de/", &unicode_entry), []);
        assert_eq!(problems("https://shop.BÜCHER.de/", &unicode_entry), []);
        let punycode_entry = allow(&["xn--bcher-kva.de"]);
        assert_eq!(problems("https://www.bücher.de/", &punycode_entry), []);
        // A Cyrillic "а" is another domain.
        let latin = allow(&["example.com"]);
        let (_, found) = check_url("https://exаmple.com/", &latin);
        assert!(
            matches!(found.as_slice(), [UrlProblem::NotAllowlisted { domain }] if domain.starts_with("xn--"))
        );
    }

    #[test]
    fn allowlist_entries_that_are_refused() {
        for (entry, why) in [
            ("https://example.com/", "not a host name"),
            ("*.example.com", "wildcard"),
            ("10.0.0.1", "IP address"),
            ("[::1]", "IP address"),
            ("co.uk", "public suffix"),
            ("github.io", "public suffix"),
            ("com", "public suffix"),
            ("", "not a host name"),
        ] {
            let error = UrlAllowlist::new([entry]).unwrap_err();
            assert!(
                error.contains(&format!("{entry:?}")) && error.contains(why),
                "{error}"
            );
        }
        assert!(UrlAllowlist::default().is_empty());
        assert!(UrlAllowlist::new(Vec::<String>::new()).unwrap().is_empty());
    }

    #[test]
    fn empty_allowlist_checks_no_host() {
        assert_eq!(codes("https://anything.example.net/"), Vec::<&str>::new());
        assert_eq!(codes("https://u@anything.example.net/"), ["url.userinfo"]);
        assert_eq!(
            [
                UrlProblem::NotAllowlisted {
                    domain: String::new()
                }
                .code(),
                UrlProblem::IpLiteral {
                    host: String::new()
                }
                .code()
            ],
            ["url.not-allowlisted", "url.ip-literal"]
        );
    }

    #[test]
    fn strip_images_keeps_allowed_ones_and_all_other_text() {
        let allowlist = allow(&["example.com"]);
        let text = "# Report\n\nSee ![chart](https://evil.net/p?d=secret) and ![ok](https://cdn.example.com/ok.png).\n\
                    A ![tracker][t] here, <img src=\"https://evil.org/pixel.gif\" width=1> there,\n\
                    <img src=\"https://cdn.example.com/fine.png\"> and [a link](https://evil.net/l).\n\n\
                    [t]: https://evil.com/t.png\n";
        let (stripped, removed) = strip_images(text, &allowlist);
        assert_eq!(
            stripped,
            "# Report\n\nSee \\[chart\\] and ![ok](https://cdn.example.com/ok.png).\n\
             A \\[tracker\\] here, <img> there,\n\
             <img src=\"https://cdn.example.com/fine.png\"> and [a link](https://evil.net/l).\n\n\
             [t]: https://evil.com/t.png\n"
        );
        assert_eq!(
            removed,
            [
                "https://evil.net/p?d=secret",
                "https://evil.com/t.png",
                "https://evil.org/pixel.gif"
            ]
        );
        assert_eq!(
            strip_images("no images at all", &allowlist),
            ("no images at all".to_owned(), vec![])
        );
    }

    #[test]
    fn images_in_tables_and_footnotes_of_github_markdown() {
        let allowlist = allow(&["example.com"]);
        let text = "| a | b |\n|---|---|\n| ![x](https://evil.net/t) | ok |\n\n\
                    Note[^1].\n\n[^1]: ![y](https://evil.net/f)\n";
        let images: Vec<String> = find_urls(text)
            .into_iter()
            .filter(|f| f.context == UrlContext::MarkdownImage)
            .map(|f| f.raw)
            .collect();
        assert_eq!(images, ["https://evil.net/t", "https://evil.net/f"]);
        let (stripped, removed) = strip_images(text, &allowlist);
        assert_eq!(
            stripped,
            "| a | b |\n|---|---|\n| \\[x\\] | ok |\n\nNote[^1].\n\n[^1]: \\[y\\]\n"
        );
        assert_eq!(removed, ["https://evil.net/t", "https://evil.net/f"]);
    }

    #[test]
    fn strip_images_in_html_blocks_and_srcset() {
        let allowlist = allow(&["example.com"]);
        let text = "> <div>\n> <img alt=\"a\"\n> src=\"https://evil.net/x\">\n> </div>\n\n\
                    <p><IMG SRC=https://cdn.example.com/a.png srcset=\"https://cdn.example.com/b.png 1x, https://evil.net/c.png 2x\"/></p>\n";
        let (stripped, removed) = strip_images(text, &allowlist);
        assert_eq!(stripped, "> <div>\n> <img>\n> </div>\n\n<p><IMG/></p>\n");
        assert_eq!(removed, ["https://evil.net/x", "https://evil.net/c.png"]);
    }

    #[test]
    fn strip_images_cannot_be_turned_into_new_images() {
        let allowlist = allow(&["example.com"]);
        for text in [
            "!![](https://evil.net/1)[x](https://evil.net/2)",
            "<<img src=https://evil.net/1>img src=https://evil.net/2>",
            "![\\!\\[x\\](https://evil.net/2)](https://evil.net/1)",
            "![&lt;img src=https://evil.net/2&gt;](https://evil.net/1)",
            "<img src=https://evil.net/1>\n![x](https://evil.net/2)\n",
        ] {
            let (stripped, _) = strip_images(text, &allowlist);
            let images: Vec<FoundUrl> = find_urls(&stripped)
                .into_iter()
                .filter(|f| matches!(f.context, UrlContext::MarkdownImage | UrlContext::HtmlImage))
                .collect();
            assert_eq!(images, [], "{text:?} became {stripped:?}");
        }
    }

    #[test]
    fn strip_images_of_a_whole_page_and_unusual_images() {
        let allowlist = allow(&["example.com"]);
        let page = "<!doctype html><body>\n\n    <img src=\"https://evil.net/indented\">\n\
                    <image href=https://evil.net/svg /><source srcset=\"https://evil.net/s 1x\">\
                    <video poster=https://evil.net/poster></video>\
                    <img alt=\"<img src=https://evil.net/inside>\" src=https://cdn.example.com/ok.png></body>";
        let (stripped, removed) = strip_images(page, &allowlist);
        assert_eq!(
            stripped,
            "<!doctype html><body>\n\n    <img>\n<image/><source><video></video>\
             <img alt=\"<img src=https://evil.net/inside>\" src=https://cdn.example.com/ok.png></body>"
        );
        assert_eq!(
            removed,
            [
                "https://evil.net/indented",
                "https://evil.net/svg",
                "https://evil.net/s",
                "https://evil.net/poster"
            ]
        );
    }

    #[test]
    fn strip_images_removes_relative_and_data_images() {
        let allowlist = allow(&["example.com"]);
        let (stripped, removed) = strip_images(
            "![a](img.png) ![b](data:image/png;base64,AAAA) ![](x)",
            &allowlist,
        );
        assert_eq!(stripped, "\\[a\\] \\[b\\] \\[\\]");
        assert_eq!(removed, ["img.png", "data:image/png;base64,AAAA", "x"]);
    }

    #[test]
    fn tag_ends_follow_the_tokenizer() {
        for (html, end) in [
            ("<img src=x>rest", 11),
            ("<img alt='a>b' src=x>rest", 21),
            ("<img alt=\"a>b\">rest", 15),
            ("<img a=b\"c>rest", 11),
            ("<img ='>' src=x>", 8),
            ("<img/>", 6),
            ("<img\nsrc = 'x' >", 16),
        ] {
            let tags = image_tags(html);
            assert_eq!(tags.len(), 1, "{html}");
            assert_eq!(tags[0].range, 0..end, "{html}");
        }
        assert_eq!(image_tags("<img src='unterminated>").len(), 0);
        assert_eq!(image_tags("<a title=\"<img src=x>\">").len(), 0);
        assert!(image_tags("<img/>")[0].self_closing);
    }

    #[test]
    fn a_megabyte_line_finishes() {
        let allowlist = allow(&["example.com"]);
        let long_url = format!("https://example.com/{}", "a".repeat(1 << 20));
        for text in [
            "a".repeat(1 << 20),
            long_url,
            "https://".repeat(1 << 17),
            "[a](".repeat(1 << 18),
            "<img src=x>".repeat(1 << 16),
            "![x](https://evil.net/) ".repeat(1 << 15),
        ] {
            let _ = find_urls(&text);
            let (stripped, _) = strip_images(&text, &allowlist);
            assert!(stripped.len() <= text.len());
        }
    }
}
