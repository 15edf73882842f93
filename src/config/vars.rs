//! Reading the environment: typed access to each variable, every failure
//! naming the variable (and never its value). Shared by every parser of
//! `crate::config`.

use super::ConfigError;
use std::time::Duration;

/// Typed access to the variables, each failure naming its variable.
pub(super) struct Vars<'a>(pub(super) &'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    pub(super) fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }

    pub(super) fn number(
        &self,
        name: &'static str,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        raw.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or(ConfigError {
                variable: name,
                reason: format!("must be a whole number from {min} to {max}"),
            })
    }

    /// `true` or `false` (also `1`/`0`, `yes`/`no`, any case); unset is false.
    pub(super) fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("false" | "0" | "no") => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some(_) => Err(ConfigError {
                variable: name,
                reason: "must be true or false".into(),
            }),
        }
    }

    pub(super) fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        let ms = self.number(name, default as usize, 1, 3_600_000)?;
        Ok(Duration::from_millis(ms as u64))
    }

    /// A secret from `name`, or from the file named by `file_var` (the
    /// Docker secrets convention). Setting both is an error, since one would
    /// silently win. Trailing line breaks of the file are not part of it.
    pub(super) fn secret(
        &self,
        name: &'static str,
        file_var: &'static str,
    ) -> Result<Option<Vec<u8>>, ConfigError> {
        match (self.get(name), self.get(file_var)) {
            (Some(_), Some(_)) => Err(ConfigError {
                variable: name,
                reason: format!("set either {name} or {file_var}, not both"),
            }),
            (Some(value), None) => Ok(Some(value.into_bytes())),
            (None, Some(path)) => {
                let mut bytes = std::fs::read(&path).map_err(|e| ConfigError {
                    variable: file_var,
                    reason: format!("cannot read the file it names: {}", e.kind()),
                })?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                Ok(Some(bytes))
            }
            (None, None) => Ok(None),
        }
    }
}
