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
use crate::engine::digest::{encode_row, encode_value_whole, TableDigest};

/// Reads a whole JSON dump and digests every table.
pub fn json_digests(reader: impl BufRead) -> Result<Vec<TableDigest>, String> {
    struct Digests(TableSums);
    impl JsonRows for Digests {
        fn table(&mut self, name: &str) -> Result<(), String> {
            self.0.begin(name);
            Ok(())
        }
        fn row(&mut self, _keys: &[String], encoded: &[u8]) -> Result<(), String> {
            self.0.add_row(xxh3_128(encoded))
        }
    }
    let mut digests = Digests(TableSums::default());
    read_json(reader, &mut digests, Values::Digest)?;
    Ok(digests.0.finish())
}

/// What a reader of a JSON dump's rows does with them.
pub(crate) trait JsonRows {
    /// The rows that follow are of table `name`.
    fn table(&mut self, name: &str) -> Result<(), String>;
    /// One row: its members' names (the same for every row of a table) and its values'
    /// canonical encoding, in document order.
    fn row(&mut self, keys: &[String], encoded: &[u8]) -> Result<(), String>;
}

/// How row values are encoded for a [`JsonRows`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Values {
    /// As the digest hashes them (a value of 1 MiB or more as its own hash).
    Digest,
    /// Whole, to be decoded again (`decode_value_whole`).
    Whole,
}

/// Reads a whole JSON dump, handing each table and row to `rows`.
pub(crate) fn read_json(
    mut reader: impl BufRead,
    rows: &mut dyn JsonRows,
    values: Values,
) -> Result<(), String> {
    let mut line = Vec::with_capacity(64 * 1024);
    let (mut encoded, mut scratch) = (Vec::new(), Vec::new());
    let mut keys: Vec<String> = Vec::new();
    let mut in_table = false;
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
            if !in_table {
                return Err("a row before any table".into());
            }
            encoded.clear();
            let mut de = serde_json::Deserializer::from_slice(text);
            RowSeed {
                out: &mut encoded,
                scratch: &mut scratch,
                keys: &mut keys,
                whole: values == Values::Whole,
            }
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| {
                format!(
                    "row {:?}: {e}",
                    String::from_utf8_lossy(&text[..text.len().min(80)])
                )
            })?;
            rows.row(&keys, &encoded)?;
        } else if let Some(name) = text.strip_suffix(b":[") {
            let name: String = serde_json::from_slice(name)
                .map_err(|e| format!("table name {:?}: {e}", String::from_utf8_lossy(name)))?;
            keys.clear();
            in_table = true;
            rows.table(&name)?;
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
    Ok(())
}

/// Encodes the values of one row object, in document order, into `out`. The first row
/// of a table sets `keys`; every other row must have the same members in that order.
struct RowSeed<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
    keys: &'a mut Vec<String>,
    whole: bool,
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
        let learn = self.keys.is_empty();
        let mut at = 0;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if learn {
                self.keys.push(key.into_owned());
            } else if self.keys.get(at).map(String::as_str) != Some(&*key) {
                return Err(de::Error::custom(format!(
                    "member {key:?} where the table's first row has {:?}",
                    self.keys.get(at)
                )));
            }
            at += 1;
            map.next_value_seed(ValueSeed {
                out: self.out,
                scratch: self.scratch,
                whole: self.whole,
            })?;
        }
        if at != self.keys.len() {
            return Err(de::Error::custom(format!(
                "{at} members where the table's first row has {}",
                self.keys.len()
            )));
        }
        Ok(())
    }
}

/// Encodes one value as the renderer wrote it (see `push_json_value`).
struct ValueSeed<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
    whole: bool,
}

impl ValueSeed<'_> {
    fn push(&mut self, v: ValueRef<'_>) {
        push_value(v, self.out, self.whole);
    }
}

fn push_value(v: ValueRef<'_>, out: &mut Vec<u8>, whole: bool) {
    if whole {
        encode_value_whole(v, out);
    } else {
        encode_row(std::iter::once(v), out);
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
        let ValueSeed {
            out,
            scratch,
            whole,
        } = self;
        map.next_value_seed(TaggedSeed {
            tag,
            out,
            scratch,
            whole,
        })?;
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
    whole: bool,
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
        push_value(value, self.out, self.whole);
        Ok(())
    }
}
