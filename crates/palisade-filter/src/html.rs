//! HTML to the text a person would see, with the text they would not see taken out and reported.
//!
//! The page is parsed by html5ever, the HTML5 tree construction a browser
//! uses, so a page reads here as it reads there. What a browser would not
//! show — `display:none`, `visibility:hidden`, `opacity:0`, zero or tiny
//! fonts, text coloured like its background, off-screen or clipped boxes,
//! `hidden`, `aria-hidden`, comments, `<template>`, `<noscript>`, `<meta>`
//! content, `alt` and `title` text, hidden inputs — is left out of the
//! visible text and listed with the reason. Inline `style` attributes and
//! simple class, id and element rules of `<style>` sheets are read; a
//! full CSS cascade is not (see docs/filtering-inbound.md).

use std::collections::HashMap;
use std::rc::Rc;

use html5ever::tendril::TendrilSink;
use html5ever::{ParseOpts, parse_document};
use markup5ever_rcdom::{Handle, NodeData, RcDom};
use serde::Serialize;

/// Text a person would not see, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hidden {
    /// `display:none`, `comment`, `alt`, … (stable names, see [`Hidden::why`]).
    pub why: &'static str,
    pub text: String,
}

/// What a page shows, and what it hides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub visible: String,
    pub hidden: Vec<Hidden>,
}

/// Whether `text` is an HTML document or fragment rather than prose that
/// mentions a tag: it starts (after whitespace) with `<` and names a known
/// element or a doctype, or holds several paired tags.
pub fn looks_like_html(text: &str) -> bool {
    if !text.contains('<') {
        return false;
    }
    let head = text.trim_start();
    let head = head.get(..head.len().min(512)).unwrap_or(head);
    let lower = head.to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        return true;
    }
    const TAGS: [&str; 12] = [
        "<div", "<p>", "<p ", "<span", "<body", "<head", "<table", "<a ", "<ul", "<section",
        "<article", "<h1",
    ];
    let sample = text.get(..text.len().min(4096)).unwrap_or(text);
    let sample = sample.to_ascii_lowercase();
    let opened = TAGS.iter().filter(|t| sample.contains(*t)).count();
    let closed = sample.matches("</").count();
    lower.starts_with('<') && opened >= 1 && closed >= 1 || opened >= 2 && closed >= 2
}

/// Why a page was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// Elements nested deeper than any real page nests them (tree
    /// construction would take time quadratic in the depth).
    #[error("elements are nested about {depth} deep, more than the {MAX_DEPTH} palisade reads")]
    TooDeep { depth: usize },
}

/// The nesting a page may have. Browsers stop nesting at 512 (Blink) or
/// so; real pages stay far below.
pub const MAX_DEPTH: usize = 4096;

/// Parses `html` and splits what it shows from what it hides.
pub fn read(html: &str) -> Result<Page, Unreadable> {
    let depth = nesting(html);
    if depth > MAX_DEPTH {
        return Err(Unreadable::TooDeep { depth });
    }
    let dom = parse_document(RcDom::default(), ParseOpts::default()).one(html);
    let sheet = Sheet::collect(&dom.document);
    let mut walk = Walk {
        sheet,
        out: Text::default(),
        hidden: Vec::new(),
    };
    walk.run(&dom.document);
    Ok(Page {
        visible: walk.out.finish(),
        hidden: walk.hidden,
    })
}

/// Elements that have no end tag, or whose end tag the parser implies;
/// they do not deepen the nesting.
const SHALLOW: [&str; 22] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr", "p", "li", "td", "th", "tr", "option", "dt", "dd", "param",
];

/// The deepest nesting the tags of `html` reach, counted in one pass over
/// the tag names (an estimate: the parser may close some implicitly).
fn nesting(html: &str) -> usize {
    let bytes = html.as_bytes();
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut i = 0;
    while let Some(at) = bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == b'<'))
    {
        i += at + 1;
        let closing = bytes.get(i) == Some(&b'/');
        let start = if closing { i + 1 } else { i };
        let len = bytes
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if len == 0 || !bytes.get(start).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        let name = html
            .get(start..start + len)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if SHALLOW.contains(&name.as_str()) {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
        } else {
            depth += 1;
            deepest = deepest.max(depth);
        }
        i = start + len;
    }
    deepest
}

/// Element names whose content is code or metadata, never text.
const SILENT: [&str; 4] = ["script", "style", "svg", "math"];

/// Elements that start a new line.
const BLOCKS: [&str; 29] = [
    "title",
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "main",
    "aside",
    "blockquote",
    "pre",
    "hr",
    "dd",
    "dt",
    "figure",
    "form",
];

/// Visible text being built, whitespace collapsed as a browser renders it.
#[derive(Default)]
struct Text {
    s: String,
    space: bool,
}

impl Text {
    fn push(&mut self, text: &str, pre: bool) {
        for c in text.chars() {
            if pre {
                self.s.push(c);
                self.space = false;
            } else if c.is_whitespace() {
                self.space = true;
            } else {
                if self.space && !self.s.is_empty() && !self.s.ends_with('\n') {
                    self.s.push(' ');
                }
                self.space = false;
                self.s.push(c);
            }
        }
    }

    fn line(&mut self) {
        self.space = false;
        if !self.s.is_empty() && !self.s.ends_with('\n') {
            self.s.push('\n');
        }
    }

    fn finish(self) -> String {
        self.s.trim_end().to_owned()
    }
}

/// Hiding rules from `<style>` sheets: selector to the reason it hides.
#[derive(Default)]
struct Sheet {
    classes: HashMap<String, &'static str>,
    ids: HashMap<String, &'static str>,
    elements: HashMap<String, &'static str>,
}

impl Sheet {
    fn collect(root: &Handle) -> Self {
        let mut sheet = Sheet::default();
        let mut stack = vec![Rc::clone(root)];
        while let Some(node) = stack.pop() {
            if element_name(&node).as_deref() == Some("style") {
                let css: String = node.children.borrow().iter().filter_map(text_of).collect();
                sheet.add(&css);
                continue;
            }
            stack.extend(node.children.borrow().iter().cloned());
        }
        sheet
    }

    fn add(&mut self, css: &str) {
        for rule in css.split('}') {
            let Some((selectors, declarations)) = rule.split_once('{') else {
                continue;
            };
            let Some(why) = style_hides(declarations, None) else {
                continue;
            };
            for selector in selectors.split(',') {
                let selector = selector.trim();
                if let Some(class) = selector.rsplit_once('.').map(|(_, c)| c)
                    && is_name(class)
                {
                    self.classes.insert(class.to_owned(), why);
                } else if let Some(id) = selector.strip_prefix('#')
                    && is_name(id)
                {
                    self.ids.insert(id.to_owned(), why);
                } else if is_name(selector) {
                    self.elements.insert(selector.to_ascii_lowercase(), why);
                }
            }
        }
    }

    fn hides(&self, name: &str, attrs: &[(String, String)]) -> Option<&'static str> {
        if let Some(why) = self.elements.get(name) {
            return Some(why);
        }
        for (key, value) in attrs {
            match key.as_str() {
                "class" => {
                    if let Some(why) = value.split_whitespace().find_map(|c| self.classes.get(c)) {
                        return Some(why);
                    }
                }
                "id" => {
                    if let Some(why) = self.ids.get(value.trim()) {
                        return Some(why);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One step of the walk: a node to enter, or a block's end to mark.
enum Step {
    Enter {
        node: Handle,
        hidden: Option<&'static str>,
        pre: bool,
        background: Option<String>,
    },
    EndBlock,
    EndHidden,
}

struct Walk {
    sheet: Sheet,
    out: Text,
    hidden: Vec<Hidden>,
}

impl Walk {
    /// Depth-first, with an explicit stack: no depth of nesting can overflow it.
    fn run(&mut self, root: &Handle) {
        // Hidden subtrees collect their text here, innermost last.
        let mut hiding: Vec<(&'static str, Text)> = Vec::new();
        let mut stack = vec![Step::Enter {
            node: Rc::clone(root),
            hidden: None,
            pre: false,
            background: None,
        }];
        while let Some(step) = stack.pop() {
            let (node, hidden, pre, background) = match step {
                Step::EndBlock => {
                    match hiding.last_mut() {
                        Some((_, text)) => text.line(),
                        None => self.out.line(),
                    }
                    continue;
                }
                Step::EndHidden => {
                    if let Some((why, text)) = hiding.pop() {
                        let text = text.finish();
                        if !text.is_empty() {
                            self.hidden.push(Hidden { why, text });
                        }
                    }
                    continue;
                }
                Step::Enter {
                    node,
                    hidden,
                    pre,
                    background,
                } => (node, hidden, pre, background),
            };
            match &node.data {
                NodeData::Text { contents } => {
                    let contents = contents.borrow();
                    match hiding.last_mut() {
                        Some((_, text)) => text.push(&contents, pre),
                        None => self.out.push(&contents, pre),
                    }
                }
                NodeData::Comment { contents } => {
                    let text = contents.trim();
                    if !text.is_empty() {
                        self.hidden.push(Hidden {
                            why: "comment",
                            text: text.to_owned(),
                        });
                    }
                }
                NodeData::Element {
                    name,
                    attrs,
                    template_contents,
                    ..
                } => {
                    let tag = name.local.to_string().to_ascii_lowercase();
                    let attrs: Vec<(String, String)> = attrs
                        .borrow()
                        .iter()
                        .map(|a| {
                            (
                                a.name.local.to_string().to_ascii_lowercase(),
                                a.value.to_string(),
                            )
                        })
                        .collect();
                    self.attribute_text(&tag, &attrs);
                    if SILENT.contains(&tag.as_str()) {
                        continue;
                    }
                    let style = attr(&attrs, "style");
                    let own_background = style.and_then(background_of);
                    let background = own_background.or(background);
                    let why = hidden.is_none().then(|| {
                        element_hides(&tag, &attrs, background.as_deref())
                            .or_else(|| self.sheet.hides(&tag, &attrs))
                    });
                    let why = why.flatten();
                    if let Some(contents) = template_contents.borrow().as_ref() {
                        stack.push(Step::EndHidden);
                        stack.push(Step::Enter {
                            node: Rc::clone(contents),
                            hidden: Some("template"),
                            pre,
                            background: background.clone(),
                        });
                        hiding.push(("template", Text::default()));
                    }
                    let block = BLOCKS.contains(&tag.as_str());
                    if let Some(why) = why {
                        hiding.push((why, Text::default()));
                        stack.push(Step::EndHidden);
                    } else if block {
                        match hiding.last_mut() {
                            Some((_, text)) => text.line(),
                            None => self.out.line(),
                        }
                        stack.push(Step::EndBlock);
                    }
                    let pre = pre || tag == "pre" || tag == "textarea";
                    let hidden = why.or(hidden);
                    for child in node.children.borrow().iter().rev() {
                        stack.push(Step::Enter {
                            node: Rc::clone(child),
                            hidden,
                            pre,
                            background: background.clone(),
                        });
                    }
                }
                NodeData::Document => {
                    for child in node.children.borrow().iter().rev() {
                        stack.push(Step::Enter {
                            node: Rc::clone(child),
                            hidden,
                            pre,
                            background: background.clone(),
                        });
                    }
                }
                NodeData::Doctype { .. } | NodeData::ProcessingInstruction { .. } => {}
            }
        }
        // An unbalanced stack cannot happen (every push has its pop); be safe anyway.
        while let Some((why, text)) = hiding.pop() {
            let text = text.finish();
            if !text.is_empty() {
                self.hidden.push(Hidden { why, text });
            }
        }
    }

    /// Text carried in attributes: never shown as text, reported.
    fn attribute_text(&mut self, tag: &str, attrs: &[(String, String)]) {
        let mut report = |why: &'static str, value: &str| {
            let value = value.trim();
            if !value.is_empty() {
                self.hidden.push(Hidden {
                    why,
                    text: value.to_owned(),
                });
            }
        };
        if let Some(alt) = attr(attrs, "alt") {
            report("alt", alt);
        }
        if let Some(title) = attr(attrs, "title") {
            report("title", title);
        }
        if let Some(label) = attr(attrs, "aria-label") {
            report("aria-label", label);
        }
        match tag {
            "meta" => {
                if let Some(content) = attr(attrs, "content") {
                    report("meta", content);
                }
            }
            "input" if attr(attrs, "type").is_some_and(|t| t.eq_ignore_ascii_case("hidden")) => {
                if let Some(value) = attr(attrs, "value") {
                    report("hidden-input", value);
                }
            }
            _ => {}
        }
    }
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn element_name(node: &Handle) -> Option<String> {
    match &node.data {
        NodeData::Element { name, .. } => Some(name.local.to_string().to_ascii_lowercase()),
        NodeData::Document
        | NodeData::Doctype { .. }
        | NodeData::Text { .. }
        | NodeData::Comment { .. }
        | NodeData::ProcessingInstruction { .. } => None,
    }
}

fn text_of(node: &Handle) -> Option<String> {
    match &node.data {
        NodeData::Text { contents } => Some(contents.borrow().to_string()),
        NodeData::Document
        | NodeData::Doctype { .. }
        | NodeData::Comment { .. }
        | NodeData::Element { .. }
        | NodeData::ProcessingInstruction { .. } => None,
    }
}

/// Why an element's own markup hides it, if it does.
fn element_hides(
    tag: &str,
    attrs: &[(String, String)],
    background: Option<&str>,
) -> Option<&'static str> {
    if tag == "noscript" {
        return Some("noscript");
    }
    if attr(attrs, "hidden").is_some() {
        return Some("hidden");
    }
    if attr(attrs, "aria-hidden").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Some("aria-hidden");
    }
    style_hides(attr(attrs, "style")?, background)
}

/// Why a list of CSS declarations hides its element, if it does.
fn style_hides(declarations: &str, background: Option<&str>) -> Option<&'static str> {
    let mut color = None;
    let mut own_background = None;
    let mut positioned = false;
    let mut far = false;
    let mut zero_box = (false, false);
    let mut overflow_hidden = false;
    for declaration in declarations.split(';') {
        let Some((property, value)) = declaration.split_once(':') else {
            continue;
        };
        let property = property.trim().to_ascii_lowercase();
        let value = value
            .trim()
            .trim_end_matches("!important")
            .trim()
            .to_ascii_lowercase();
        match property.as_str() {
            "display" if value == "none" => return Some("display:none"),
            "visibility" if value == "hidden" || value == "collapse" => {
                return Some("visibility:hidden");
            }
            "opacity" if number(&value).is_some_and(|n| n <= 0.05) => return Some("opacity:0"),
            "font-size" if tiny_length(&value) => return Some("font-size:0"),
            "line-height" | "max-height" if tiny_length(&value) => zero_box.1 = true,
            "color" => color = normalize_color(&value),
            "background" | "background-color" => own_background = normalize_color(&value),
            "position" if value == "absolute" || value == "fixed" => positioned = true,
            "left" | "top" | "right" | "margin-left" | "margin-top" => {
                far |= far_length(&value);
            }
            "text-indent" if far_length(&value) => return Some("off-screen"),
            "transform" if value.contains("scale(0") => return Some("transform:scale(0)"),
            "clip" if value.replace(' ', "").starts_with("rect(0,0,0,0") => {
                return Some("clipped");
            }
            "clip-path" if value.contains("inset(50%") || value.contains("circle(0") => {
                return Some("clipped");
            }
            "width" if tiny_length(&value) => zero_box.0 = true,
            "height" if tiny_length(&value) => zero_box.1 = true,
            "overflow" if value == "hidden" => overflow_hidden = true,
            _ => {}
        }
    }
    if far && (positioned || zero_box.0) {
        return Some("off-screen");
    }
    if (zero_box.0 || zero_box.1) && overflow_hidden {
        return Some("zero-size");
    }
    let background = own_background.as_deref().or(background).unwrap_or("ffffff");
    if color.as_deref() == Some(background) {
        return Some("same-colour-as-background");
    }
    None
}

fn background_of(declarations: &str) -> Option<String> {
    declarations.split(';').find_map(|d| {
        let (property, value) = d.split_once(':')?;
        let property = property.trim().to_ascii_lowercase();
        (property == "background" || property == "background-color")
            .then(|| normalize_color(&value.trim().to_ascii_lowercase()))
            .flatten()
    })
}

fn number(value: &str) -> Option<f64> {
    value.trim().parse().ok()
}

/// A length of at most 1px (or 0.1em/rem, 1%, or 0 in any unit).
fn tiny_length(value: &str) -> bool {
    let value = value.trim();
    let (digits, unit) = split_unit(value);
    let Some(n) = number(digits) else {
        return false;
    };
    match unit {
        "" | "px" | "pt" => n <= 1.0,
        "em" | "rem" | "ex" | "ch" => n <= 0.1,
        "%" | "vw" | "vh" => n <= 1.0,
        _ => n == 0.0,
    }
}

/// A negative offset of 1000px (or 50em, 100%) or more: off the page.
fn far_length(value: &str) -> bool {
    let (digits, unit) = split_unit(value.trim());
    let Some(n) = number(digits) else {
        return false;
    };
    match unit {
        "px" | "pt" | "" => n <= -1000.0,
        "em" | "rem" => n <= -50.0,
        "%" | "vw" | "vh" => n <= -100.0,
        _ => false,
    }
}

fn split_unit(value: &str) -> (&str, &str) {
    let at = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(value.len());
    (
        value.get(..at).unwrap_or(value),
        value.get(at..).unwrap_or(""),
    )
}

/// A colour as six hex digits, for the names and notations pages use to hide text.
fn normalize_color(value: &str) -> Option<String> {
    let value = value.trim();
    let value = if value.starts_with("rgb") {
        value.split(')').next()?
    } else {
        value.split_whitespace().next()?
    };
    let named = match value {
        "white" => Some("ffffff"),
        "black" => Some("000000"),
        "transparent" => None,
        _ => None,
    };
    if let Some(named) = named {
        return Some(named.to_owned());
    }
    if let Some(hex) = value.strip_prefix('#') {
        let hex = match hex.len() {
            3 | 4 => hex.chars().take(3).flat_map(|c| [c, c]).collect(),
            6 | 8 => hex.get(..6)?.to_owned(),
            _ => return None,
        };
        return hex.chars().all(|c| c.is_ascii_hexdigit()).then_some(hex);
    }
    let inner = value
        .strip_prefix("rgba(")
        .or_else(|| value.strip_prefix("rgb("))?
        .trim_end_matches(')');
    let parts: Vec<u8> = inner
        .split([',', ' ', '/'])
        .filter(|p| !p.is_empty())
        .take(3)
        .map(|p| p.trim().parse::<u8>().ok())
        .collect::<Option<_>>()?;
    (parts.len() == 3).then(|| parts.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden_whys(page: &Page) -> Vec<&'static str> {
        page.hidden.iter().map(|h| h.why).collect()
    }

    #[test]
    fn visible_text_keeps_blocks_and_collapses_spaces() {
        let page = read("<html><body><h1>Title</h1><p>One   two\n three</p><ul><li>a</li><li>b</li></ul></body></html>").unwrap();
        assert_eq!(page.visible, "Title\nOne two three\na\nb");
        assert!(page.hidden.is_empty());
    }

    #[test]
    fn every_way_of_hiding_is_reported() {
        let html = r#"<p>Shown.</p>
            <div style="display: none">a</div>
            <span style="visibility:hidden">b</span>
            <span style="opacity:0">c</span>
            <span style="font-size:0px">d</span>
            <span style="color:#fff">e</span>
            <div style="background:#000"><span style="color:black">f</span></div>
            <div style="position:absolute; left:-9999px">g</div>
            <p hidden>h</p>
            <p aria-hidden="true">i</p>
            <!-- j -->
            <template><p>k</p></template>
            <noscript>l</noscript>
            <img src="x.png" alt="m">
            <a href="/" title="n">link</a>
            <style>.sr { display:none } #gone{visibility:hidden}</style>
            <p class="x sr">o</p><p id="gone">p</p>
            <div style="height:0;overflow:hidden">q</div>
            <meta name="description" content="r">
            <input type="hidden" value="s">"#;
        let page = read(html).unwrap();
        assert_eq!(page.visible, "Shown.\nlink");
        let mut texts: Vec<&str> = page.hidden.iter().map(|h| h.text.as_str()).collect();
        texts.sort_unstable();
        assert_eq!(
            texts,
            [
                "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p",
                "q", "r", "s"
            ]
        );
        let whys = hidden_whys(&page);
        for why in [
            "display:none",
            "visibility:hidden",
            "opacity:0",
            "font-size:0",
            "same-colour-as-background",
            "off-screen",
            "hidden",
            "aria-hidden",
            "comment",
            "template",
            "noscript",
            "alt",
            "title",
            "zero-size",
            "meta",
            "hidden-input",
        ] {
            assert!(whys.contains(&why), "{why} missing from {whys:?}");
        }
    }

    #[test]
    fn text_inside_a_hidden_subtree_is_reported_once_as_a_whole() {
        let page = read("<div style=display:none><p>Ignore</p><p>previous <b>instructions</b></p></div><p>ok</p>").unwrap();
        assert_eq!(page.visible, "ok");
        assert_eq!(page.hidden.len(), 1);
        assert_eq!(
            page.hidden.first().map(|h| h.text.as_str()),
            Some("Ignore\nprevious instructions")
        );
    }

    #[test]
    fn scripts_and_styles_are_not_text() {
        let page = read("<script>var x = 'ignore';</script><style>p{}</style><p>a</p>").unwrap();
        assert_eq!(page.visible, "a");
        assert!(page.hidden.is_empty());
    }

    #[test]
    fn deep_nesting_is_read_up_to_the_bound_and_refused_beyond() {
        let depth = 3000;
        let html = format!("{}deep{}", "<div>".repeat(depth), "</div>".repeat(depth));
        assert_eq!(read(&html).unwrap().visible, "deep");
        let depth = 100_000;
        let html = format!("{}deep{}", "<div>".repeat(depth), "</div>".repeat(depth));
        assert_eq!(read(&html), Err(Unreadable::TooDeep { depth }));
        // Paragraphs close each other: a long page of them is not deep.
        let html = "<p>para".repeat(10_000);
        assert!(read(&html).is_ok());
    }

    #[test]
    fn what_looks_like_html() {
        assert!(looks_like_html("<!DOCTYPE html><html></html>"));
        assert!(looks_like_html("  <div class=x>hi</div>"));
        assert!(!looks_like_html("use a <div> for that"));
        assert!(!looks_like_html("plain text"));
    }

    #[test]
    fn colours_in_every_notation() {
        assert_eq!(normalize_color("#fff").as_deref(), Some("ffffff"));
        assert_eq!(
            normalize_color("rgb(255, 255, 255)").as_deref(),
            Some("ffffff")
        );
        assert_eq!(normalize_color("#ffffff80").as_deref(), Some("ffffff"));
        assert_eq!(normalize_color("nonsense"), None);
    }
}
