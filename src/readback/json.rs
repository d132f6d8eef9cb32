//! A JSON dump read back: the layout chunkdump writes (`{"tables":{`, then per table a
//! `"name":[` line, one row object per line, `]`), parsed strictly. Each row's values are
//! encoded canonically (see [`crate::engine::digest`]) straight from the text as the
//! parser meets them: no `serde_json::Value` tree, no allocation per row or value.

use std::fmt;
use std::io::BufRead;

use base64::Engine;
use rusqlite::types::ValueRef;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use xxhash_rust::xxh3::xxh3_128;

use super::TableSums;
use crate::engine::digest::{encode_row, TableDigest};

/// Reads a whole JSON dump and digests every table.
pub fn json_digests(mut reader: impl BufRead) -> Result<Vec<TableDigest>, String> {
    let mut tables = TableSums::default();
    let mut line = Vec::with_capacity(64 * 1024);
    let (mut encoded, mut scratch) = (Vec::new(), Vec::new());
    let mut first = true;
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if std::mem::take(&mut first) {
            if text != b"{\"tables\":{" {
                return Err(format!(
                    "unexpected start {:?}",
                    String::from_utf8_lossy(text)
                ));
            }
            continue;
        }
        let text = text.strip_suffix(b",").unwrap_or(text);
        if text.first() == Some(&b'{') {
            encoded.clear();
            let mut de = serde_json::Deserializer::from_slice(text);
            RowSeed {
                out: &mut encoded,
                scratch: &mut scratch,
            }
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| {
                format!(
                    "row {:?}: {e}",
                    String::from_utf8_lossy(&text[..text.len().min(80)])
                )
            })?;
            tables.add_row(xxh3_128(&encoded))?;
        } else if let Some(name) = text.strip_suffix(b":[") {
            let name: String = serde_json::from_slice(name)
                .map_err(|e| format!("table name {:?}: {e}", String::from_utf8_lossy(name)))?;
            tables.begin(&name);
        } else if text != b"]" && text != b"}}" {
            return Err(format!(
                "unexpected line {:?}",
                String::from_utf8_lossy(&text[..text.len().min(80)])
            ));
        }
    }
    if first {
        return Err("empty document".into());
    }
    Ok(tables.finish())
}

/// Encodes the values of one row object, in document order, into `out`.
struct RowSeed<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(ValueSeed {
                out: self.out,
                scratch: self.scratch,
            })?;
        }
        Ok(())
    }
}

/// Encodes one value as the renderer wrote it (see `push_json_value`).
struct ValueSeed<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
}

impl ValueSeed<'_> {
    fn push(&mut self, v: ValueRef<'_>) {
        encode_row(std::iter::once(v), self.out);
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null, a number, a string or a tagged value")
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.push(ValueRef::Null);
        Ok(())
    }
    fn visit_i64<E: de::Error>(mut self, i: i64) -> Result<(), E> {
        self.push(ValueRef::Integer(i));
        Ok(())
    }
    fn visit_u64<E: de::Error>(mut self, u: u64) -> Result<(), E> {
        // Above i64::MAX only a REAL can have been written as a bare integer.
        self.push(match i64::try_from(u) {
            Ok(i) => ValueRef::Integer(i),
            Err(_) => ValueRef::Real(u as f64),
        });
        Ok(())
    }
    fn visit_f64<E: de::Error>(mut self, f: f64) -> Result<(), E> {
        self.push(ValueRef::Real(f));
        Ok(())
    }
    fn visit_str<E: de::Error>(mut self, s: &str) -> Result<(), E> {
        self.push(ValueRef::Text(s.as_bytes()));
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let tag: Tag = map
            .next_key()?
            .ok_or_else(|| de::Error::custom("an empty object is not a value"))?;
        let ValueSeed { out, scratch } = self;
        map.next_value_seed(TaggedSeed { tag, out, scratch })?;
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a tagged value has one key"));
        }
        Ok(())
    }
}

/// The tags of values JSON has no literal for.
#[derive(serde::Deserialize, Clone, Copy)]
enum Tag {
    #[serde(rename = "$base64")]
    Blob,
    #[serde(rename = "$textBase64")]
    Text,
    #[serde(rename = "$real")]
    Real,
}

struct TaggedSeed<'a> {
    tag: Tag,
    out: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for TaggedSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for TaggedSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tagged value's string")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        let value = match self.tag {
            Tag::Real => ValueRef::Real(match s {
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                other => return Err(E::custom(format!("unknown $real {other:?}"))),
            }),
            Tag::Blob | Tag::Text => {
                self.scratch.clear();
                base64::engine::general_purpose::STANDARD
                    .decode_vec(s, self.scratch)
                    .map_err(E::custom)?;
                if matches!(self.tag, Tag::Blob) {
                    ValueRef::Blob(self.scratch)
                } else {
                    ValueRef::Text(self.scratch)
                }
            }
        };
        encode_row(std::iter::once(value), self.out);
        Ok(())
    }
}
