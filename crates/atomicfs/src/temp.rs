//! Temp file names: portable, marked, traceable to their writer.
//!
//! `.{target}.sfatomic-{pid}-{16 hex digits}.tmp`, where `{target}` is the
//! target's name with every character outside `[A-Za-z0-9._-]` replaced by
//! `_` and cut so the whole name fits in 255 bytes. Every character is valid
//! on Windows too; the marker lets [`cleanup_orphans`](crate::cleanup_orphans)
//! recognise this crate's files and nothing else.

use std::ffi::OsStr;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

const MARKER: &str = ".sfatomic-";
const SUFFIX: &str = ".tmp";
/// NAME_MAX on every common file system.
const MAX_NAME: usize = 255;

/// A fresh temp name for a target named `target`.
pub(crate) fn name(target: &OsStr) -> String {
    let tail = format!("{MARKER}{}-{:016x}{SUFFIX}", std::process::id(), random());
    let room = MAX_NAME - 1 - tail.len();
    let mut name = String::with_capacity(MAX_NAME);
    name.push('.');
    name.extend(
        target
            .to_string_lossy()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(room),
    );
    name.push_str(&tail);
    name
}

/// The writer's pid, if `name` is one of this crate's temp names.
pub(crate) fn parse(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    let rest = name.strip_prefix('.')?.strip_suffix(SUFFIX)?;
    let (_, tail) = rest.rsplit_once(MARKER)?;
    let (pid, random) = tail.split_once('-')?;
    let hex = random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    if hex && digits {
        pid.parse().ok()
    } else {
        None
    }
}

/// 64 random bits: the standard library's per-process random keys, mixed
/// with a counter so two names drawn in the same instant differ.
fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_portable_marked_and_fit() {
        let n = name(OsStr::new("héllo wörld:<>?.png"));
        assert!(n.starts_with(".h_llo_w_rld____.png.sfatomic-"), "{n}");
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{n}"
        );
        assert_eq!(parse(OsStr::new(&n)), Some(std::process::id()));

        let long = "x".repeat(1000);
        let n = name(OsStr::new(&long));
        assert_eq!(n.len(), MAX_NAME);
        assert_eq!(parse(OsStr::new(&n)), Some(std::process::id()));
        assert_ne!(name(OsStr::new("a")), name(OsStr::new("a")));
    }

    #[test]
    fn only_our_names_parse() {
        for other in [
            "a.tmp",
            ".a.tmp",
            ".a.sfatomic-12-zz.tmp",
            ".a.sfatomic--0123456789abcdef.tmp",
            ".a.sfatomic-12-0123456789abcdef.tmp.bak",
            "a.sfatomic-12-0123456789abcdef.tmp",
        ] {
            assert_eq!(parse(OsStr::new(other)), None, "{other}");
        }
        assert_eq!(
            parse(OsStr::new(".a.sfatomic-12-0123456789abcdef.tmp")),
            Some(12)
        );
    }
}
