//! Configuration errors: every problem names the field path (or the TOML line and column).

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted field path such as `targets[1].luns[0].block_size`; empty for whole-file problems.
    pub field: String,
    /// 1-based line and column when the TOML parser located the problem.
    pub line_column: Option<(usize, usize)>,
    pub message: String,
}

/// Why a configuration could not be loaded. Validation reports every problem it finds,
/// not only the first, so one edit round fixes them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file being loaded, when known (set by `Config::load`).
    pub file: Option<PathBuf>,
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            problems: vec![ConfigProblem { field: field.into(), line_column: None, message: message.into() }],
        }
    }

    /// Converts a TOML/serde error, turning its byte span into a line and column of `text`.
    pub fn from_toml(error: &toml::de::Error, text: &str) -> ConfigError {
        let line_column = error.span().map(|span| line_column_of(text, span.start));
        ConfigError {
            file: None,
            problems: vec![ConfigProblem {
                field: String::new(),
                line_column,
                // toml leaves the message empty for some errors (a NUL in a comment).
                message: match error.message().trim() {
                    "" => "invalid TOML syntax".to_string(),
                    message => message.to_string(),
                },
            }],
        }
    }

    pub fn with_file(mut self, file: PathBuf) -> ConfigError {
        self.file = Some(file);
        self
    }

    /// True when some problem concerns `field` exactly or something inside it.
    pub fn mentions_field(&self, field: &str) -> bool {
        self.problems
            .iter()
            .any(|p| p.field == field || p.field.strip_prefix(field).is_some_and(|rest| rest.starts_with(['.', '['])))
    }
}

fn line_column_of(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.line_column {
            write!(f, "line {line}, column {column}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.file.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default();
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{prefix}{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_and_field() {
        let text = "a = 1\nb = [\n";
        let toml_error = toml::from_str::<toml::Table>(text).unwrap_err();
        let error = ConfigError::from_toml(&toml_error, text).with_file("x.toml".into());
        let shown = error.to_string();
        assert!(shown.starts_with("x.toml: line "), "{shown}");
        let field_error = ConfigError::field("targets[1].luns[0].block_size", "must be 512 or 4096, got 1000");
        assert_eq!(field_error.to_string(), "targets[1].luns[0].block_size: must be 512 or 4096, got 1000");
    }

    #[test]
    fn toml_error_always_has_a_message() {
        // Found by fuzzing (fuzz/ config_toml): a NUL in a comment gave an empty message.
        let text = "# comment\0\n[[portals]]\n";
        let toml_error = toml::from_str::<toml::Table>(text).unwrap_err();
        let error = ConfigError::from_toml(&toml_error, text);
        assert!(!error.problems[0].message.is_empty(), "{error:?}");
        assert_eq!(error.problems[0].line_column, Some((1, 10)));
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column_of("ab\ncd", 0), (1, 1));
        assert_eq!(line_column_of("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn mentions_field_matches_prefixes_only_at_boundaries() {
        let error = ConfigError::field("targets[1].luns[0].block_size", "x");
        assert!(error.mentions_field("targets[1].luns[0].block_size"));
        assert!(error.mentions_field("targets[1]"));
        assert!(!error.mentions_field("targets[1].luns[0].block"));
    }
}
