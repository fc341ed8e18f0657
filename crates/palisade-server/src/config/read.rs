//! Reading TOML one field at a time: an unknown field or a value of the
//! wrong type is reported by its dotted path and position, in plain words.
//!
//! The fields a table knows are the ones its reader asks for (see `raw`),
//! so the list in "expected one of" cannot drift from what is read.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeArray, DeInteger, DeTable, DeValue};

use super::ConfigError;
use super::raw::RawSetting;

/// The config text and the name that errors give it.
pub(super) struct Source<'t> {
    pub(super) file: &'t str,
    pub(super) text: &'t str,
}

impl<'t> Source<'t> {
    /// Parses the text as TOML; a syntax error names its line and column.
    pub(super) fn parse(&self) -> Result<Fields<'_, 't>, ConfigError> {
        let table = DeTable::parse(self.text).map_err(|e| {
            let message = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            let message = match e.span() {
                Some(span) => format!("invalid TOML at {}: {message}", self.at(&span)),
                None => format!("invalid TOML: {message}"),
            };
            ConfigError::Syntax {
                file: self.file.to_owned(),
                message,
            }
        })?;
        Ok(Fields::new(self, String::new(), table.into_inner()))
    }

    /// "line L, column C" of where a span starts, both counted from 1.
    fn at(&self, span: &Range<usize>) -> String {
        let before = self.text.get(..span.start).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or(before).chars().count() + 1;
        format!("line {line}, column {column}")
    }

    fn invalid(&self, field: String, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            field,
            message,
        }
    }

    fn wrong_type(
        &self,
        field: &str,
        span: &Range<usize>,
        expected: &str,
        got: &DeValue<'_>,
        secret: Secret,
    ) -> ConfigError {
        self.invalid(
            field.to_owned(),
            format!(
                "expected {expected}, got {} ({})",
                describe(got, secret),
                self.at(span)
            ),
        )
    }

    /// `value` taken apart by `pick` if it is of the kind `pick` wants;
    /// else "expected …, got …".
    fn kind<T>(
        &self,
        field: &str,
        value: Spanned<DeValue<'t>>,
        expected: &str,
        secret: Secret,
        pick: impl FnOnce(DeValue<'t>) -> Result<T, DeValue<'t>>,
    ) -> Result<T, ConfigError> {
        let span = value.span();
        pick(value.into_inner())
            .map_err(|other| self.wrong_type(field, &span, expected, &other, secret))
    }

    fn string(
        &self,
        field: &str,
        value: Spanned<DeValue<'t>>,
        expected: &str,
        secret: Secret,
    ) -> Result<String, ConfigError> {
        self.kind(field, value, expected, secret, string)
            .map(Cow::into_owned)
    }
}

// One per kind of value a config field can hold: the value's content, or
// the value itself back for the error.

fn string(value: DeValue<'_>) -> Result<Cow<'_, str>, DeValue<'_>> {
    if let DeValue::String(s) = value {
        Ok(s)
    } else {
        Err(value)
    }
}

fn integer(value: DeValue<'_>) -> Result<DeInteger<'_>, DeValue<'_>> {
    if let DeValue::Integer(i) = value {
        Ok(i)
    } else {
        Err(value)
    }
}

fn number(value: DeValue<'_>) -> Result<String, DeValue<'_>> {
    match value {
        DeValue::Integer(i) => Ok(i.as_str().to_owned()),
        DeValue::Float(f) => Ok(f.as_str().to_owned()),
        other @ (DeValue::String(_)
        | DeValue::Boolean(_)
        | DeValue::Datetime(_)
        | DeValue::Array(_)
        | DeValue::Table(_)) => Err(other),
    }
}

fn boolean(value: DeValue<'_>) -> Result<bool, DeValue<'_>> {
    if let DeValue::Boolean(b) = value {
        Ok(b)
    } else {
        Err(value)
    }
}

fn array(value: DeValue<'_>) -> Result<DeArray<'_>, DeValue<'_>> {
    if let DeValue::Array(items) = value {
        Ok(items)
    } else {
        Err(value)
    }
}

fn table(value: DeValue<'_>) -> Result<DeTable<'_>, DeValue<'_>> {
    if let DeValue::Table(table) = value {
        Ok(table)
    } else {
        Err(value)
    }
}

/// Whether a value may be shown in an error: `env` and `headers` values are
/// where credentials live, and `check` output ends up in CI logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Secret {
    Shown,
    Hidden,
}

/// What a value is, for "got …": the value itself where it is short and not secret.
fn describe(value: &DeValue<'_>, secret: Secret) -> String {
    let shown = secret == Secret::Shown;
    match value {
        DeValue::String(s) if shown => format!("the string `{}`", shorten(s)),
        DeValue::String(_) => "a string".into(),
        DeValue::Integer(i) if shown => format!("the whole number `{i}`"),
        DeValue::Integer(_) => "a whole number".into(),
        DeValue::Float(f) if shown => format!("the number `{f}`"),
        DeValue::Float(_) => "a number".into(),
        DeValue::Boolean(b) if shown => format!("`{b}`"),
        DeValue::Boolean(_) => "true or false".into(),
        DeValue::Datetime(d) if shown => format!("the date `{d}`"),
        DeValue::Datetime(_) => "a date".into(),
        DeValue::Array(_) => "a list".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

fn shorten(s: &str) -> Cow<'_, str> {
    const LONGEST: usize = 40;
    match s.char_indices().nth(LONGEST) {
        Some((end, _)) => Cow::Owned(format!("{}…", s.get(..end).unwrap_or(s))),
        None => Cow::Borrowed(s),
    }
}

/// The fields of one table still to be read, and the names asked for so far.
pub(super) struct Fields<'s, 't> {
    source: &'s Source<'t>,
    /// Dotted path of this table; empty at the top level.
    path: String,
    entries: Vec<(Spanned<Cow<'t, str>>, Spanned<DeValue<'t>>)>,
    known: Vec<&'static str>,
}

impl<'s, 't> Fields<'s, 't> {
    fn new(source: &'s Source<'t>, path: String, table: DeTable<'t>) -> Self {
        Fields {
            source,
            path,
            entries: table.into_iter().collect(),
            known: Vec::new(),
        }
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Removes `key`, recording it as a field this table knows.
    fn take(&mut self, key: &'static str) -> Option<(String, Spanned<DeValue<'t>>)> {
        self.known.push(key);
        let i = self.entries.iter().position(|(k, _)| k.get_ref() == key)?;
        let (_, value) = self.entries.swap_remove(i);
        Some((self.child(key), value))
    }

    pub(super) fn string(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        self.take(key)
            .map(|(field, value)| self.source.string(&field, value, "a string", Secret::Shown))
            .transpose()
    }

    /// A string whose value is never shown in an error (a URL with a password).
    pub(super) fn secret_string(
        &mut self,
        key: &'static str,
    ) -> Result<Option<String>, ConfigError> {
        self.take(key)
            .map(|(field, value)| {
                self.source
                    .string(&field, value, "a string", Secret::Hidden)
            })
            .transpose()
    }

    /// A duration, written as text; what it says is checked in `validate`.
    pub(super) fn duration(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        self.take(key)
            .map(|(field, value)| {
                let expected = "a duration in quotes, such as \"30s\" or \"500ms\"";
                self.source.string(&field, value, expected, Secret::Shown)
            })
            .transpose()
    }

    pub(super) fn path(&mut self, key: &'static str) -> Result<Option<PathBuf>, ConfigError> {
        self.take(key)
            .map(|(field, value)| {
                let expected = "a path in quotes";
                self.source
                    .string(&field, value, expected, Secret::Shown)
                    .map(PathBuf::from)
            })
            .transpose()
    }

    pub(super) fn whole(&mut self, key: &'static str) -> Result<Option<usize>, ConfigError> {
        let Some((field, value)) = self.take(key) else {
            return Ok(None);
        };
        let span = value.span();
        let i = self
            .source
            .kind(&field, value, "a whole number", Secret::Shown, integer)?;
        let n = u64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .and_then(|n| usize::try_from(n).ok());
        n.map(Some).ok_or_else(|| {
            let why = if i.as_str().starts_with('-') {
                "a whole number of 0 or more"
            } else {
                "a smaller whole number"
            };
            let message = format!("expected {why}, got `{i}` ({})", self.source.at(&span));
            self.source.invalid(field, message)
        })
    }

    /// An amount of money: a whole number (`50`) or a decimal in quotes
    /// (`"0.05"`), never a float, which cannot hold cents exactly. What
    /// it says is checked in `validate`.
    pub(super) fn amount(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some((field, value)) = self.take(key) else {
            return Ok(None);
        };
        let span = value.span();
        let expected = "dollars as a whole number or a decimal in quotes, such as 50 or \"0.05\" (a float cannot hold cents exactly)";
        match value.into_inner() {
            DeValue::Integer(i) => Ok(Some(i.as_str().to_owned())),
            DeValue::String(s) => Ok(Some(s.into_owned())),
            other @ (DeValue::Float(_)
            | DeValue::Boolean(_)
            | DeValue::Datetime(_)
            | DeValue::Array(_)
            | DeValue::Table(_)) => {
                Err(self
                    .source
                    .wrong_type(&field, &span, expected, &other, Secret::Shown))
            }
        }
    }

    /// A number, whole or not (`0.5`, `2`).
    pub(super) fn number(&mut self, key: &'static str) -> Result<Option<f64>, ConfigError> {
        let Some((field, value)) = self.take(key) else {
            return Ok(None);
        };
        let text = self.source.kind(
            &field,
            value,
            "a number, such as 0.5",
            Secret::Shown,
            number,
        )?;
        match text.replace('_', "").parse::<f64>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(self
                .source
                .invalid(field, format!("expected a number, got `{text}`"))),
        }
    }

    pub(super) fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        self.take(key)
            .map(|(field, value)| {
                self.source
                    .kind(&field, value, "true or false", Secret::Shown, boolean)
            })
            .transpose()
    }

    /// A list of strings; an item of another type is named by its index.
    pub(super) fn strings(
        &mut self,
        key: &'static str,
    ) -> Result<Option<Vec<String>>, ConfigError> {
        let Some((field, value)) = self.take(key) else {
            return Ok(None);
        };
        let expected = "a list of strings, such as [\"a\", \"b\"]";
        let items = self
            .source
            .kind(&field, value, expected, Secret::Shown, array)?;
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                self.source
                    .string(&format!("{field}[{i}]"), item, "a string", Secret::Shown)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A list of egress rules, each `"host:port"` or a table
    /// `{ host, port, methods, paths, addresses }`; the rules themselves are
    /// checked when they are compiled.
    pub(super) fn rules(
        &mut self,
        key: &'static str,
    ) -> Result<Option<Vec<palisade_egress::RuleSpec>>, ConfigError> {
        let Some((field, value)) = self.take(key) else {
            return Ok(None);
        };
        let expected = "a list of rules, such as [\"api.example.com:443\"]";
        let items = self
            .source
            .kind(&field, value, expected, Secret::Shown, array)?;
        let mut rules = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let path = format!("{field}[{i}]");
            let rule = match item.into_inner() {
                DeValue::String(s) => palisade_egress::RuleSpec::Short(s.into_owned()),
                DeValue::Table(t) => {
                    let mut f = Fields::new(self.source, path.clone(), t);
                    let host = f.string("host")?;
                    let port = f.ports("port")?;
                    let methods = f.strings("methods")?.unwrap_or_default();
                    let paths = f.strings("paths")?.unwrap_or_default();
                    let addresses = f.strings("addresses")?.unwrap_or_default();
                    f.finish()?;
                    let (Some(host), Some(port)) = (host, port) else {
                        return Err(self.source.invalid(
                            path,
                            "a rule table needs `host` and `port`, such as { host = \"api.example.com\", port = 443 }".into(),
                        ));
                    };
                    palisade_egress::RuleSpec::Full(palisade_egress::rule::FullRule {
                        host,
                        port,
                        methods,
                        paths,
                        addresses,
                    })
                }
                other @ (DeValue::Integer(_)
                | DeValue::Float(_)
                | DeValue::Boolean(_)
                | DeValue::Datetime(_)
                | DeValue::Array(_)) => {
                    return Err(self.source.invalid(
                        path,
                        format!(
                            "expected a rule such as \"api.example.com:443\" or {{ host = \"api.example.com\", port = 443 }}, got {}",
                            describe(&other, Secret::Shown)
                        ),
                    ));
                }
            };
            rules.push(rule);
        }
        Ok(Some(rules))
    }

    /// A port (`443`) or a list of ports (`[80, 443]`).
    fn ports(
        &mut self,
        key: &'static str,
    ) -> Result<Option<palisade_egress::rule::Ports>, ConfigError> {
        let Some((field, value)) = self.take(key) else {
            return Ok(None);
        };
        let expected = "a port such as 443, or a list such as [80, 443]";
        let port = |field: &str, value: DeValue<'_>| -> Result<u16, ConfigError> {
            match value {
                DeValue::Integer(i) => u16::from_str_radix(i.as_str(), i.radix())
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        self.source.invalid(
                            field.to_owned(),
                            format!("`{i}` is not a port (1 to 65535)"),
                        )
                    }),
                other @ (DeValue::String(_)
                | DeValue::Float(_)
                | DeValue::Boolean(_)
                | DeValue::Datetime(_)
                | DeValue::Array(_)
                | DeValue::Table(_)) => Err(self.source.invalid(
                    field.to_owned(),
                    format!(
                        "expected {expected}, got {}",
                        describe(&other, Secret::Shown)
                    ),
                )),
            }
        };
        match value.into_inner() {
            DeValue::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| port(&format!("{field}[{i}]"), item.into_inner()))
                .collect::<Result<Vec<_>, _>>()
                .map(|ports| Some(palisade_egress::rule::Ports::Many(ports))),
            other @ (DeValue::String(_)
            | DeValue::Integer(_)
            | DeValue::Float(_)
            | DeValue::Boolean(_)
            | DeValue::Datetime(_)
            | DeValue::Table(_)) => {
                port(&field, other).map(|p| Some(palisade_egress::rule::Ports::One(p)))
            }
        }
    }

    /// A table whose values are each a list of strings (`hosts = { "api.test" = ["127.0.0.1"] }`).
    pub(super) fn string_lists(
        &mut self,
        key: &'static str,
    ) -> Result<Option<BTreeMap<String, Vec<String>>>, ConfigError> {
        let Some(mut table) = self.table(key)? else {
            return Ok(None);
        };
        let keys: Vec<String> = table
            .entries
            .iter()
            .map(|(k, _)| k.get_ref().to_string())
            .collect();
        let mut out = BTreeMap::new();
        for name in keys {
            let Some(i) = table.entries.iter().position(|(k, _)| *k.get_ref() == name) else {
                continue;
            };
            let (_, value) = table.entries.swap_remove(i);
            let field = table.child(&name);
            let expected = "a list of addresses, such as [\"127.0.0.1\"]";
            let items = self
                .source
                .kind(&field, value, expected, Secret::Shown, array)?;
            let list = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    self.source
                        .string(&format!("{field}[{i}]"), item, "a string", Secret::Shown)
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.insert(name, list);
        }
        Ok(Some(out))
    }

    /// A table whose values are all strings, such as `env` or `headers`.
    pub(super) fn string_table(
        &mut self,
        key: &'static str,
        secret: Secret,
    ) -> Result<Option<BTreeMap<String, String>>, ConfigError> {
        let Some((field, value)) = self.take(key) else {
            return Ok(None);
        };
        let expected = "a table of strings, such as { NAME = \"value\" }";
        let entries = self.source.kind(&field, value, expected, secret, table)?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let k = k.into_inner();
                let v = self
                    .source
                    .string(&format!("{field}.{k}"), v, "a string", secret)?;
                Ok((k.into_owned(), v))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some)
    }

    /// A table whose values are each a string, or a reference to a secret
    /// `{ secret = "NAME", format = "Bearer {}" }`, such as `env` or `headers`.
    /// Literal values are never shown in an error.
    pub(super) fn settings(
        &mut self,
        key: &'static str,
    ) -> Result<Option<BTreeMap<String, RawSetting>>, ConfigError> {
        let Some((field, value)) = self.take(key) else {
            return Ok(None);
        };
        let expected = "a table such as { NAME = \"value\" } or { NAME = { secret = \"name\" } }";
        let entries = self
            .source
            .kind(&field, value, expected, Secret::Hidden, table)?;
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let k = k.into_inner().into_owned();
            let path = format!("{field}.{k}");
            let setting = match v.into_inner() {
                DeValue::String(s) => RawSetting::Literal(s.into_owned()),
                DeValue::Table(t) => {
                    let mut f = Fields::new(self.source, path.clone(), t);
                    let secret = f.string("secret")?;
                    let format = f.string("format")?;
                    f.finish()?;
                    let Some(secret) = secret else {
                        return Err(self.source.invalid(
                            path,
                            "a table here names a secret: `{ secret = \"name\" }`".into(),
                        ));
                    };
                    RawSetting::Secret { secret, format }
                }
                other @ (DeValue::Integer(_)
                | DeValue::Float(_)
                | DeValue::Boolean(_)
                | DeValue::Datetime(_)
                | DeValue::Array(_)) => {
                    return Err(self.source.invalid(
                        path,
                        format!(
                            "expected a string or {{ secret = \"name\" }}, got {}",
                            describe(&other, Secret::Hidden)
                        ),
                    ));
                }
            };
            out.insert(k, setting);
        }
        Ok(Some(out))
    }

    /// A table of fields, such as `[server]`, to read with its own `Fields`.
    pub(super) fn table(
        &mut self,
        key: &'static str,
    ) -> Result<Option<Fields<'s, 't>>, ConfigError> {
        let Some((field, value)) = self.take(key) else {
            return Ok(None);
        };
        let expected = format!("a [{field}] table");
        let entries = self
            .source
            .kind(&field, value, &expected, Secret::Shown, table)?;
        Ok(Some(Fields::new(self.source, field, entries)))
    }

    /// A table of tables by name, such as `[upstreams.NAME]`.
    pub(super) fn named_tables(
        &mut self,
        key: &'static str,
    ) -> Result<Vec<(String, Fields<'s, 't>)>, ConfigError> {
        let Some((field, value)) = self.take(key) else {
            return Ok(Vec::new());
        };
        let expected = format!("[{field}.NAME] tables, one per name");
        let named = self
            .source
            .kind(&field, value, &expected, Secret::Shown, table)?;
        named
            .into_iter()
            .map(|(name, value)| {
                let name = name.into_inner().into_owned();
                let path = format!("{field}.{name}");
                let expected = format!("a [{path}] table");
                let entries = self
                    .source
                    .kind(&path, value, &expected, Secret::Shown, table)?;
                Ok((name, Fields::new(self.source, path, entries)))
            })
            .collect()
    }

    /// Refuses the first field, in file order, that no reader asked for.
    pub(super) fn finish(self) -> Result<(), ConfigError> {
        let Some((key, _)) = self.entries.iter().min_by_key(|(k, _)| k.span().start) else {
            return Ok(());
        };
        Err(self.source.invalid(
            self.child(key.get_ref()),
            format!(
                "unknown field ({}); expected one of {}",
                self.source.at(&key.span()),
                self.known.join(", ")
            ),
        ))
    }
}
