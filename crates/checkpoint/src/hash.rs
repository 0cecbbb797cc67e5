//! Config hashes and record checksums.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// `sha256:<hex>` over the canonical serialization of `config`: JSON with
/// object keys sorted (at every depth) and no whitespace, so the same
/// configuration always hashes the same, whatever the field order of the
/// struct or the map it came from.
///
/// Put in everything that changes the output: the configuration file,
/// the flags that matter, and the identity of the input (for an exporter,
/// the source file's version).
///
/// ```
/// use std::collections::HashMap;
/// use steadfast_checkpoint::config_hash;
///
/// #[derive(serde::Serialize)]
/// struct Config { formats: Vec<&'static str>, scales: Vec<u8>, file: &'static str }
///
/// let a = config_hash(&Config { formats: vec!["svg"], scales: vec![1, 2], file: "abc" })?;
/// assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
///
/// // Key order does not matter.
/// let one: HashMap<_, _> = [("x", 1), ("y", 2)].into_iter().collect();
/// let two: HashMap<_, _> = [("y", 2), ("x", 1)].into_iter().collect();
/// assert_eq!(config_hash(&one)?, config_hash(&two)?);
/// # Ok::<(), steadfast_checkpoint::Error>(())
/// ```
///
/// # Errors
///
/// [`Error`] if `config` cannot be serialized (a map with non-string keys).
pub fn config_hash<T: Serialize + ?Sized>(config: &T) -> Result<String, Error> {
    let value = serde_json::to_value(config).map_err(Error::config)?;
    let mut canonical = Vec::new();
    write_canonical(&value, &mut canonical).map_err(Error::config)?;
    Ok(format!("sha256:{}", hex(&Sha256::digest(&canonical))))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Writes `value` as JSON with every object's keys sorted by their UTF-8
/// bytes, at every depth, and no whitespace. Sorted here, not by relying on
/// `serde_json::Map` being a `BTreeMap`: any crate in the dependency graph
/// can turn on serde_json's `preserve_order`, which makes it an insertion-
/// ordered map.
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) -> serde_json::Result<()> {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_canonical(item, out)?;
            }
            out.push(b'}');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it), the checksum of
/// each journal record.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn sha256_of_the_canonical_form() {
        // sha256("{}")
        assert_eq!(
            config_hash(&serde_json::json!({})).expect("hash"),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let nested_a = serde_json::json!({"b": {"y": 1, "x": [1, 2]}, "a": null});
        let nested_b: serde_json::Value =
            serde_json::from_str(r#"{ "a": null, "b": { "x": [1,2], "y": 1 } }"#).expect("json");
        assert_eq!(
            config_hash(&nested_a).expect("a"),
            config_hash(&nested_b).expect("b")
        );
        assert_ne!(
            config_hash(&serde_json::json!({"x": [1, 2]})).expect("a"),
            config_hash(&serde_json::json!({"x": [2, 1]})).expect("b"),
            "order inside arrays matters"
        );
    }

    /// The tests build serde_json with `preserve_order` on (a dev
    /// dependency turns it on), as any crate in a user's graph may: before,
    /// the hash then depended on the order fields were declared in.
    #[test]
    fn canonical_with_preserve_order_on() {
        #[derive(serde::Serialize)]
        struct Declared {
            zebra: u8,
            apple: u8,
        }
        let mut map = serde_json::Map::new();
        map.insert("zebra".into(), 1.into());
        map.insert("apple".into(), 2.into());
        let keys: Vec<&String> = map.keys().collect();
        assert_eq!(
            keys,
            ["zebra", "apple"],
            "preserve_order is on in this build"
        );
        let from_struct = config_hash(&Declared { zebra: 1, apple: 2 }).expect("hash");
        let sorted: serde_json::Value =
            serde_json::from_str(r#"{"apple":2,"zebra":1}"#).expect("json");
        assert_eq!(from_struct, config_hash(&sorted).expect("hash"));
        // The canonical bytes themselves: sha256 of {"apple":2,"zebra":1}.
        let mut out = Vec::new();
        write_canonical(&serde_json::Value::Object(map), &mut out).expect("write");
        assert_eq!(out, br#"{"apple":2,"zebra":1}"#);
    }
}
