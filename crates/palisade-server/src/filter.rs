//! Layer 4's parts that need the runtime: the configured output schemas, read from their files.

use palisade_core::Target;
use palisade_filter::schema::ToolSchemas;

use crate::config::Config;
use crate::gateway::StartError;

/// The output schemas `[filter] schemas` names, each read and compiled; a
/// file that cannot be read or does not compile stops the start, naming it.
pub fn output_schemas(config: &Config) -> Result<ToolSchemas, StartError> {
    let mut schemas = Vec::new();
    for (name, path) in &config.filter.schemas {
        let (server, tool) = name.split_once('/').unwrap_or((name, ""));
        let text = std::fs::read_to_string(path).map_err(|e| {
            StartError::Filter(format!(
                "`filter.schemas.{name}`: cannot read `{}`: {e}",
                path.display()
            ))
        })?;
        let schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            StartError::Filter(format!(
                "`filter.schemas.{name}`: `{}` is not JSON: {e}",
                path.display()
            ))
        })?;
        schemas.push((Target::new(server, tool), schema));
    }
    ToolSchemas::configured(schemas).map_err(StartError::Filter)
}
