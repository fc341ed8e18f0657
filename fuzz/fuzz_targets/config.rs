//! Fuzzes config parsing and validation: any text gives a config or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_server::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) = Config::parse(text, "fuzz.toml")
    {
        // What validates renders, and what renders validates again.
        let shown = config.to_toml();
        assert!(Config::parse(&shown, "effective").is_ok(), "{shown}");
    }
});
