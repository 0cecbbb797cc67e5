//! Node names to safe relative paths.
//!
//! A `/` in a name makes a folder; each segment is slugified to
//! `[a-z0-9_-]`; `.`, `..`, empty segments vanish; Windows-reserved names
//! get a leading `_`; segments are capped at 64 bytes; an empty result
//! becomes `node-<id>`; names that collide case-insensitively get the node
//! id appended, with a warning. Every path is relative and made only of
//! such segments, so nothing can land outside the output directory.

use std::collections::HashMap;
use std::path::PathBuf;

/// Longest segment, in bytes.
const MAX_SEGMENT: usize = 64;
/// Most folder levels kept from a name.
const MAX_DEPTH: usize = 8;

const RESERVED: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// One segment as `[a-z0-9_-]`, never empty unless nothing was usable.
pub fn slug(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for c in segment.chars() {
        let c = fold(c);
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c == '_' {
            out.push('_');
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out.truncate(MAX_SEGMENT);
    while out.ends_with('-') {
        out.pop();
    }
    let stem = out.split('.').next().unwrap_or("");
    if RESERVED.contains(&stem) {
        out.insert(0, '_');
    }
    out
}

/// Common Latin letters with diacritics to their base letter.
fn fold(c: char) -> char {
    match c {
        'à'..='å' | 'À'..='Å' => 'a',
        'ç' | 'Ç' => 'c',
        'è'..='ë' | 'È'..='Ë' => 'e',
        'ì'..='ï' | 'Ì'..='Ï' => 'i',
        'ñ' | 'Ñ' => 'n',
        'ò'..='ö' | 'Ò'..='Ö' | 'ø' | 'Ø' => 'o',
        'ù'..='ü' | 'Ù'..='Ü' => 'u',
        'ý' | 'ÿ' | 'Ý' => 'y',
        other => other,
    }
}

/// The relative path (without extension) for a node's name.
pub fn relative(name: &str, id: &str) -> PathBuf {
    let segments: Vec<String> = name
        .split('/')
        .map(slug)
        .filter(|s| !s.is_empty())
        .collect();
    let mut path = PathBuf::new();
    let keep = segments.len().saturating_sub(MAX_DEPTH);
    for segment in &segments[keep..] {
        path.push(segment);
    }
    if path.as_os_str().is_empty() {
        path.push(format!("node-{}", slug(id)));
    }
    path
}

/// Assigns each node a unique path (case-insensitively), in the order
/// given: later nodes that collide get `-<node id>` appended.
#[derive(Debug, Default)]
pub struct Namer {
    taken: HashMap<String, String>,
    /// Collisions resolved: (name, node id, path given).
    pub collisions: Vec<(String, String, PathBuf)>,
}

impl Namer {
    /// The path for `name` (node `id`) with `suffix` (e.g. `@2x.png`).
    pub fn assign(&mut self, name: &str, id: &str, suffix: &str) -> PathBuf {
        let base = relative(name, id);
        let key = |p: &PathBuf| format!("{}{suffix}", p.to_string_lossy().to_lowercase());
        match self.taken.get(&key(&base)) {
            None => {
                self.taken.insert(key(&base), id.to_string());
                with_suffix(base, suffix)
            }
            Some(owner) if owner == id => with_suffix(base, suffix),
            Some(_) => {
                let mut unique = base.clone();
                let last = unique
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                unique.set_file_name(format!("{last}-{}", slug(id)));
                self.taken.insert(key(&unique), id.to_string());
                let path = with_suffix(unique, suffix);
                self.collisions
                    .push((name.to_string(), id.to_string(), path.clone()));
                path
            }
        }
    }
}

fn with_suffix(path: PathBuf, suffix: &str) -> PathBuf {
    let mut text = path.into_os_string();
    text.push(suffix);
    PathBuf::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;

    #[test]
    fn hostile_names_stay_inside() {
        for name in [
            "../../etc/passwd",
            "..",
            ".",
            "",
            "/",
            "/leading",
            "with/trailing/",
            "CON",
            "nul.txt",
            "a/../../b",
            "back\\slash",
            "🔥",
            "C:\\Windows",
            &"x".repeat(400),
        ] {
            let path = relative(name, "1:2");
            assert!(!path.as_os_str().is_empty(), "{name:?}");
            for component in path.components() {
                match component {
                    Component::Normal(segment) => {
                        let s = segment.to_string_lossy();
                        assert!(s.len() <= MAX_SEGMENT + 1, "{name:?}: {s}");
                        assert!(
                            s.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                            "{name:?}: {s}"
                        );
                    }
                    other => panic!("{name:?} gave {other:?}"),
                }
            }
        }
        assert_eq!(
            relative("../../etc/passwd", "1:2"),
            PathBuf::from("etc/passwd")
        );
        assert_eq!(relative("CON", "1:2"), PathBuf::from("_con"));
        assert_eq!(relative("", "1:2"), PathBuf::from("node-1-2"));
        assert_eq!(
            relative("Size=24, Style=Filled", "1:2"),
            PathBuf::from("size-24-style-filled")
        );
        assert_eq!(
            relative("Ünïcødé Ärrow", "1:2"),
            PathBuf::from("unicode-arrow")
        );
    }

    #[test]
    fn case_insensitive_collisions_get_the_node_id() {
        let mut namer = Namer::default();
        assert_eq!(
            namer.assign("Icons/Arrow Left", "1:1", ".svg"),
            PathBuf::from("icons/arrow-left.svg")
        );
        assert_eq!(
            namer.assign("icons/ARROW left", "1:2", ".svg"),
            PathBuf::from("icons/arrow-left-1-2.svg")
        );
        assert_eq!(
            namer.assign("Icons/Arrow Left", "1:1", ".pdf"),
            PathBuf::from("icons/arrow-left.pdf")
        );
        assert_eq!(namer.collisions.len(), 1);
    }
}
