//! Model prices as versioned data: what a number of input and output tokens costs, in integer micro-dollars.
//!
//! palisade ships a table (`data/prices.toml`, dated by its `version`); an
//! operator may give their own in the same form. A tool's configured model
//! must be in the table (checked when the configuration loads); usage
//! reported for a model the table lacks is charged at the table's highest
//! price, and says so.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::spec::{Micros, SpecError};

/// The table palisade ships.
const BUNDLED: &str = include_str!("../data/prices.toml");

/// What one model costs per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Price {
    pub input: Micros,
    pub output: Micros,
}

/// Prices by model name, with the version of the data they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceTable {
    pub version: String,
    pub models: BTreeMap<String, Price>,
}

impl PriceTable {
    pub fn bundled() -> Self {
        // The bundled table is checked by a test; should it ever not parse,
        // an empty table makes every configured model an error at load.
        Self::parse(BUNDLED, "the bundled price table").unwrap_or_else(|_| Self {
            version: "none".into(),
            models: BTreeMap::new(),
        })
    }

    /// Reads a table: `version = "…"` and `[models."NAME"] input = "2.50"
    /// output = "10.00"` (dollars per million tokens). `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SpecError> {
        let value: toml::Value = toml::from_str(text)
            .map_err(|e| SpecError::new(format!("{origin} is not valid TOML: {}", e.message())))?;
        let version = value
            .get("version")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| SpecError::new(format!("{origin} has no `version = \"…\"`")))?
            .to_owned();
        let mut models = BTreeMap::new();
        let table = value
            .get("models")
            .and_then(toml::Value::as_table)
            .ok_or_else(|| SpecError::new(format!("{origin} has no `[models.\"NAME\"]` tables")))?;
        for (name, entry) in table {
            let price = |side: &str| -> Result<Micros, SpecError> {
                let text = entry.get(side).and_then(toml::Value::as_str).ok_or_else(|| {
                    SpecError::new(format!(
                        "{origin}: model `{name}` needs `{side} = \"DOLLARS\"` per million tokens, as a string"
                    ))
                })?;
                Micros::parse(text)
                    .map_err(|e| SpecError::new(format!("{origin}: model `{name}` {side}: {e}")))
            };
            models.insert(
                name.clone(),
                Price {
                    input: price("input")?,
                    output: price("output")?,
                },
            );
        }
        Ok(Self { version, models })
    }

    pub fn get(&self, model: &str) -> Option<Price> {
        self.models.get(model).copied()
    }

    /// The dearest price in the table, for usage of a model it lacks.
    pub fn highest(&self) -> Price {
        let input = self
            .models
            .values()
            .map(|p| p.input)
            .max()
            .unwrap_or_default();
        let output = self
            .models
            .values()
            .map(|p| p.output)
            .max()
            .unwrap_or_default();
        Price { input, output }
    }
}

impl Price {
    /// What `input` and `output` tokens cost, rounded up to a micro-dollar.
    pub fn cost(&self, input: u64, output: u64) -> u64 {
        let total = u128::from(input) * u128::from(self.input.0)
            + u128::from(output) * u128::from(self.output.0);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// The most `tokens` can cost, whether read or written.
    pub fn ceiling(&self, tokens: u64) -> u64 {
        let dearest = self.input.max(self.output);
        Price {
            input: dearest,
            output: Micros(0),
        }
        .cost(tokens, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_table_parses_and_prices_in_micros() {
        let table = PriceTable::parse(BUNDLED, "bundled").unwrap();
        assert!(table.models.len() >= 5);
        let gpt = table.get("gpt-4o").unwrap();
        // 1,000 input tokens at $2.50/M and 500 output at $10/M: $0.0075.
        assert_eq!(gpt.cost(1_000, 500), 7_500);
        // One token still costs at least a micro-dollar's worth, rounded up.
        assert_eq!(table.get("gpt-4o-mini").unwrap().cost(1, 0), 1);
        assert_eq!(gpt.ceiling(1_000), 10_000);
        assert_eq!(table.highest().output, Micros(75_000_000));
    }

    #[test]
    fn a_bad_table_names_what_is_wrong() {
        let error = PriceTable::parse(
            "version = \"x\"\n[models.m]\ninput = 2.5\noutput = \"1\"",
            "prices.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("model `m`") && error.contains("as a string"),
            "{error}"
        );
        let error = PriceTable::parse("[models.m]", "prices.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("version"), "{error}");
    }
}
