//! Which pages and frames hold the icons and the images: `--icons-page`,
//! `--icons-frame`, `--images-page`, globs matched case-insensitively
//! against Figma's page and frame names.

/// Glob patterns; a name matches when any pattern does. `*` matches any
/// run of characters (none included), `?` any one; nothing else is special.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Globs(Vec<String>);

impl Globs {
    /// The patterns, as given (each trimmed; empty ones dropped).
    pub fn new(patterns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self(
            patterns
                .into_iter()
                .map(|p| p.into().trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    /// Matches everything.
    pub fn any() -> Self {
        Self::new(["*"])
    }

    /// Whether this matches every name.
    pub fn is_any(&self) -> bool {
        self.0.iter().any(|p| p == "*")
    }

    /// Whether `name` matches one of the patterns.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.to_lowercase().chars().collect();
        self.0.iter().any(|p| {
            let pattern: Vec<char> = p.to_lowercase().chars().collect();
            glob(&pattern, &name)
        })
    }
}

impl std::fmt::Display for Globs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// Iterative glob match with one backtrack point (the last `*`): linear in
/// practice, never exponential.
fn glob(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Where icons and images are looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filters {
    /// Pages whose components are icons (default `Icons`).
    pub icons_page: Globs,
    /// Frames (or sections) whose components are icons, at any depth
    /// (default `*`: any, or none).
    pub icons_frame: Globs,
    /// Pages whose frames are images (default `Images`).
    pub images_page: Globs,
}

impl Default for Filters {
    /// Icons from the page named "Icons", images from the page named
    /// "Images": the named-pages convention of Figma exporters; components
    /// on other pages (documentation, drafts) are not icons.
    fn default() -> Self {
        Self {
            icons_page: Globs::new(["Icons"]),
            icons_frame: Globs::any(),
            images_page: Globs::new(["Images"]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = |p: &str, n: &str| Globs::new([p]).matches(n);
        assert!(g("Icons", "icons"));
        assert!(g("Icon*", "Icons v2"));
        assert!(g("*icons*", "🔥 Brand Icons (new)"));
        assert!(g("v?", "V2"));
        assert!(!g("v?", "v10"));
        assert!(!g("Icons", "Icons v2"));
        assert!(g("*", ""));
        assert!(g("a*b*c", "a--b--b--c"));
        assert!(!g("a*b*c", "a--b--b--d"));
        assert!(Globs::new(["Drafts", "Ico*"]).matches("Icons"));
        assert!(!Globs::new(Vec::<String>::new()).matches("x"));
    }
}
