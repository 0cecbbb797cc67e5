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
    // `serde_json::Value` keeps objects in a `BTreeMap`: sorted keys.
    let value = serde_json::to_value(config).map_err(Error::config)?;
    let canonical = serde_json::to_vec(&value).map_err(Error::config)?;
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

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it), the checksum of
/// each journal record.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
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
}
