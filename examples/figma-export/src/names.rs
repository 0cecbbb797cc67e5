//! Node names to safe relative paths.
//!
//! A `/` in a name makes a folder; each segment is slugified to
//! `[a-z0-9_-]`; `.`, `..`, empty segments vanish; Windows-reserved names
//! get a leading `_`; segments are capped at 64 bytes; an empty result
//! becomes `node-<id>`; names that collide case-insensitively get the node
//! id appended, with a warning. Every path is relative and made only of
//! such segments, so nothing can land outside the output directory.

use std::collections::{BTreeMap, HashMap, HashSet};
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

/// Unique paths (case-insensitively) for a set of nodes, whatever their
/// order or ids: of names that collide once slugified and lowercased, the
/// one that sorts first keeps the plain path, the others get `-` and 8 hex
/// digits of a hash of their own name (`arrow-left-3f2a9c1d`). Moving a
/// node, or adding another elsewhere, changes no one's path. Only exact
/// duplicates (the same name twice) fall back to the node id.
#[derive(Debug, Default)]
pub struct Names {
    paths: HashMap<String, PathBuf>,
    /// Collisions resolved: (name, node id, path given), in a stable order.
    pub collisions: Vec<(String, String, PathBuf)>,
}

impl Names {
    /// Plans the paths of `nodes`: `(id, name)` pairs.
    pub fn plan<'a>(nodes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut groups: BTreeMap<String, Vec<(&str, &str, PathBuf)>> = BTreeMap::new();
        for (id, name) in nodes {
            let base = relative(name, id);
            let key = base.to_string_lossy().to_lowercase();
            groups.entry(key).or_default().push((id, name, base));
        }
        let mut names = Self::default();
        let mut taken: HashSet<String> = groups.keys().cloned().collect();
        for (_, mut group) in groups {
            group.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
            let mut rest = group.into_iter();
            if let Some((id, _, base)) = rest.next() {
                names.paths.insert(id.to_string(), base);
            }
            for (id, name, base) in rest {
                let last = base
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut unique = base.clone();
                unique.set_file_name(format!("{last}-{:08x}", fnv1a(name.as_bytes()) as u32));
                if !taken.insert(unique.to_string_lossy().to_lowercase()) {
                    // The same name twice: only the id tells them apart.
                    unique.set_file_name(format!(
                        "{last}-{:08x}-{}",
                        fnv1a(name.as_bytes()) as u32,
                        slug(id)
                    ));
                    taken.insert(unique.to_string_lossy().to_lowercase());
                }
                names
                    .collisions
                    .push((name.to_string(), id.to_string(), unique.clone()));
                names.paths.insert(id.to_string(), unique);
            }
        }
        names
    }

    /// The path of node `id` with `suffix` (e.g. `@2x.png`).
    pub fn path(&self, id: &str, suffix: &str) -> PathBuf {
        let base = self
            .paths
            .get(id)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(format!("node-{}", slug(id))));
        with_suffix(base, suffix)
    }
}

/// FNV-1a, 64 bits: a stable hash (the same on every run and platform).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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
    fn case_insensitive_collisions_get_a_stable_suffix() {
        let names = Names::plan([("1:1", "Icons/Arrow Left"), ("1:2", "icons/ARROW left")]);
        assert_eq!(
            names.path("1:1", ".svg"),
            PathBuf::from("icons/arrow-left.svg")
        );
        let other = names.path("1:2", ".svg");
        assert_eq!(other, PathBuf::from("icons/arrow-left-e9fa5458.svg"));
        assert_eq!(
            names.path("1:1", ".pdf"),
            PathBuf::from("icons/arrow-left.pdf")
        );
        assert_eq!(names.collisions.len(), 1);
        // Moved nodes (new order, new ids) keep their paths: before, the
        // suffix was the node id and the plain path went to whichever came
        // first.
        let moved = Names::plan([("9:7", "icons/ARROW left"), ("9:3", "Icons/Arrow Left")]);
        assert_eq!(
            moved.path("9:3", ".svg"),
            PathBuf::from("icons/arrow-left.svg")
        );
        assert_eq!(moved.path("9:7", ".svg"), other);
        // Exact duplicates fall back to the id, and stay unique.
        let dup = Names::plan([("1:1", "Star"), ("1:2", "Star"), ("1:3", "star")]);
        let paths: HashSet<PathBuf> = ["1:1", "1:2", "1:3"]
            .iter()
            .map(|id| dup.path(id, ".svg"))
            .collect();
        assert_eq!(paths.len(), 3, "{paths:?}");
    }
}
