//! `colors.json` (design tokens) and `colors.css` (custom properties) from
//! the file's color styles.
//!
//! The tokens follow the Design Tokens Community Group format, 2025.10:
//! groups are nested objects (one per `/` in a style's name), a color's
//! `$value` is `{colorSpace, components, alpha, hex}`, and names never hold
//! `.`, `{`, `}` or a leading `$`. A name that had to change, and a
//! duplicate, is kept (never dropped) under a unique name, with a warning.
//! The old draft format (flat names, `$value` a hex string) is
//! [`TokensFormat::Legacy`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

/// Which `colors.json` to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokensFormat {
    /// DTCG 2025.10: nested groups, structured color values (the default).
    #[default]
    Dtcg2025,
    /// The earlier draft: flat `"Brand/100": {"$type": "color", "$value": "#rrggbb"}`.
    Legacy,
}

/// One color style: its name in Figma and its sRGB value, channels and
/// alpha in 0..=1.
#[derive(Clone, Debug, PartialEq)]
pub struct Color {
    /// The style's name (`Brand/100`).
    pub name: String,
    /// Red, green, blue.
    pub rgb: [f64; 3],
    /// Alpha (the color's alpha times the fill's opacity).
    pub alpha: f64,
}

impl Color {
    fn channel(v: f64) -> u8 {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }

    /// `#rrggbb`.
    pub fn hex(&self) -> String {
        let [r, g, b] = self.rgb.map(Self::channel);
        format!("#{r:02x}{g:02x}{b:02x}")
    }

    /// `#rrggbb`, or `#rrggbbaa` when not opaque.
    pub fn css(&self) -> String {
        if self.alpha >= 1.0 {
            self.hex()
        } else {
            format!("{}{:02x}", self.hex(), Self::channel(self.alpha))
        }
    }

    fn dtcg_value(&self) -> Value {
        // Four decimals: what 8-bit channels need, without float noise.
        let round = |v: f64| (v.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0;
        json!({
            "colorSpace": "srgb",
            "components": self.rgb.map(round),
            "alpha": round(self.alpha),
            "hex": self.hex(),
        })
    }
}

/// The two files, and a warning for every name that had to change.
pub struct ColorFiles {
    /// `colors.json`.
    pub json: Vec<u8>,
    /// `colors.css`.
    pub css: Vec<u8>,
    /// What had to change, for people.
    pub warnings: Vec<String>,
}

/// A token-name segment as DTCG allows: no `.`, `{`, `}`, no leading `$`,
/// not empty, trimmed.
fn token_segment(segment: &str) -> String {
    let cleaned: String = segment
        .trim()
        .chars()
        .map(|c| if matches!(c, '.' | '{' | '}') { '-' } else { c })
        .collect();
    let cleaned = cleaned.trim_start_matches('$').trim().to_string();
    if cleaned.is_empty() {
        "unnamed".into()
    } else {
        cleaned
    }
}

/// A custom-property name from a style name: slugged segments joined by
/// `-`, never empty (emoji and non-Latin names slug to nothing).
fn css_name(name: &str) -> String {
    let parts: Vec<String> = name
        .split('/')
        .map(crate::names::slug)
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        format!("color-{:08x}", crate::names::fnv1a(name.as_bytes()) as u32)
    } else {
        parts.join("-")
    }
}

/// The token path (segments) for every color, unique, in the colors'
/// order; duplicates get ` 2`, ` 3`… on their last segment.
fn token_paths(colors: &[Color], warnings: &mut Vec<String>) -> Vec<Vec<String>> {
    let mut taken = BTreeSet::new();
    let mut paths = Vec::with_capacity(colors.len());
    for color in colors {
        let mut path: Vec<String> = color.name.split('/').map(token_segment).collect();
        if path.join("/") != color.name {
            warnings.push(format!(
                "color style {:?} is written as token {:?} (token names cannot hold '.', '{{', '}}' or start with '$')",
                color.name,
                path.join("/")
            ));
        }
        let base = path.last().cloned().unwrap_or_default();
        let mut n = 1;
        while !taken.insert(path.join("/")) {
            n += 1;
            if let Some(last) = path.last_mut() {
                *last = format!("{base} {n}");
            }
        }
        if n > 1 {
            warnings.push(format!(
                "color style {:?} appears more than once; this one is token {:?}",
                color.name,
                path.join("/")
            ));
        }
        paths.push(path);
    }
    paths
}

/// Puts `token` at `path` in the nested groups; a group that is also a
/// token keeps it under `$root` (DTCG 2025.10).
fn insert(groups: &mut Map<String, Value>, path: &[String], token: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut here = groups;
    for segment in parents {
        let entry = here
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if entry.get("$value").is_some() {
            // A token where a group must go: it becomes the group's root.
            let root = std::mem::replace(entry, Value::Object(Map::new()));
            entry
                .as_object_mut()
                .map(|group| group.insert("$root".into(), root));
        }
        here = match entry.as_object_mut() {
            Some(map) => map,
            None => return,
        };
    }
    match here.get_mut(last) {
        Some(Value::Object(group)) if group.get("$value").is_none() => {
            group.insert("$root".into(), token);
        }
        _ => {
            here.insert(last.clone(), token);
        }
    }
}

/// `value` with every object's keys in byte order, whether or not
/// serde_json's `preserve_order` is on somewhere in the build: the file is
/// the same byte for byte either way.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let entries: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Both files for `colors` (in a stable order: the caller sorts).
pub fn color_files(colors: &[Color], format: TokensFormat) -> ColorFiles {
    let mut warnings = Vec::new();
    let paths = token_paths(colors, &mut warnings);
    let json_value = match format {
        TokensFormat::Dtcg2025 => {
            let mut groups = Map::new();
            for (color, path) in colors.iter().zip(&paths) {
                insert(
                    &mut groups,
                    path,
                    json!({"$type": "color", "$value": color.dtcg_value()}),
                );
            }
            Value::Object(groups)
        }
        TokensFormat::Legacy => {
            let flat: BTreeMap<String, Value> = colors
                .iter()
                .zip(&paths)
                .map(|(color, path)| {
                    (
                        path.join("/"),
                        json!({"$type": "color", "$value": color.css()}),
                    )
                })
                .collect();
            json!(flat)
        }
    };
    let mut json = serde_json::to_vec_pretty(&sorted(json_value)).unwrap_or_default();
    json.push(b'\n');

    // Custom properties: valid and unique, each traced to its style.
    let mut taken = BTreeSet::new();
    let mut css = String::from(":root {\n");
    for color in colors {
        let base = css_name(&color.name);
        let mut name = base.clone();
        let mut n = 1;
        while !taken.insert(name.clone()) {
            n += 1;
            name = format!("{base}-{n}");
        }
        if n > 1 {
            warnings.push(format!(
                "color style {:?} collides with another in CSS; written as --{name}",
                color.name
            ));
        } else if crate::names::slug(&color.name.replace('/', "-")).is_empty() {
            warnings.push(format!(
                "color style {:?} has no letters CSS allows; written as --{name}",
                color.name
            ));
        }
        css.push_str(&format!("  --{name}: {};\n", color.css()));
    }
    css.push_str("}\n");
    ColorFiles {
        json,
        css: css.into_bytes(),
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, rgb: [f64; 3], alpha: f64) -> Color {
        Color {
            name: name.into(),
            rgb,
            alpha,
        }
    }

    /// The golden file: the DTCG 2025.10 shape, checked byte for byte.
    #[test]
    fn golden_colors_json() {
        let colors = [
            c("Brand/100", [1.0, 0.0, 0.0], 1.0),
            c("Brand/200", [0.0, 0.5, 1.0], 0.5),
            c("Brand", [0.2, 0.2, 0.2], 1.0),
            c("Text/Primary", [0.0, 0.0, 0.0], 1.0),
            c("Text/Primary", [0.1, 0.1, 0.1], 1.0),
            c("v1.2/{accent}", [0.0, 1.0, 0.0], 1.0),
            c("🔥", [1.0, 0.5, 0.0], 1.0),
            c("Текст/Основной", [0.3, 0.3, 0.3], 1.0),
        ];
        let files = color_files(&colors, TokensFormat::Dtcg2025);
        let golden_path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/colors.json");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(golden_path, &files.json).expect("write the golden file");
        }
        let golden = std::fs::read_to_string(golden_path).expect("the golden file");
        assert_eq!(String::from_utf8_lossy(&files.json), golden);
        let css = String::from_utf8_lossy(&files.css);
        let names: Vec<&str> = css
            .lines()
            .filter_map(|l| l.trim().strip_prefix("--"))
            .filter_map(|l| l.split(':').next())
            .collect();
        let unique: BTreeSet<&&str> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "unique: {names:?}");
        for name in &names {
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "valid custom property: --{name}"
            );
        }
        assert!(
            files.warnings.iter().any(|w| w.contains("more than once")),
            "{:?}",
            files.warnings
        );
        assert!(
            files.warnings.iter().any(|w| w.contains("v1.2/{accent}")),
            "{:?}",
            files.warnings
        );
        assert!(
            files.warnings.iter().any(|w| w.contains("🔥")),
            "{:?}",
            files.warnings
        );
    }

    #[test]
    fn legacy_is_the_flat_draft() {
        let files = color_files(
            &[c("Brand/100", [1.0, 0.0, 0.0], 0.5)],
            TokensFormat::Legacy,
        );
        let v: Value = serde_json::from_slice(&files.json).expect("json");
        assert_eq!(
            v,
            json!({"Brand/100": {"$type": "color", "$value": "#ff000080"}})
        );
    }
}
