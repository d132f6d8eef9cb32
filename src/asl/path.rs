//! The JSONPath subset of Amazon States Language that chunkdump's definition uses:
//! `$`, `$.a.b` and the context object `$$.Execution.Name` style paths, payload
//! templates (`"key.$": "$.path"`) and `ResultPath` merging.

use serde_json::{Map, Value};

/// A path that is not valid or does not match the input (`States.Runtime` in AWS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError(pub String);

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Splits `$.a.b` (or `$$.a.b` when `context` is true) into its field names.
fn fields(path: &str, context: bool) -> Result<Vec<&str>, PathError> {
    let root = if context { "$$" } else { "$" };
    let rest = path
        .strip_prefix(root)
        .ok_or_else(|| PathError(format!("path {path:?} must start with {root}")))?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let rest = rest.strip_prefix('.').ok_or_else(|| {
        PathError(format!(
            "unsupported path {path:?}: only $.field.field is supported"
        ))
    })?;
    let parts: Vec<&str> = rest.split('.').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || p.contains(['[', ']', '*', '@', '?', '(', ')', '\'', '"']))
    {
        return Err(PathError(format!(
            "unsupported path {path:?}: only $.field.field is supported"
        )));
    }
    Ok(parts)
}

/// Checks that `path` is in the supported subset (for validating a definition).
pub fn check(path: &str) -> Result<(), PathError> {
    if path.starts_with("$$") {
        fields(path, true).map(drop)
    } else {
        fields(path, false).map(drop)
    }
}

/// Reads `path` from `input`, or from `context` for `$$` paths.
pub fn get(path: &str, input: &Value, context: &Value) -> Result<Value, PathError> {
    let (root, parts) = if path.starts_with("$$") {
        (context, fields(path, true)?)
    } else {
        (input, fields(path, false)?)
    };
    let mut at = root;
    for part in parts {
        at = at.get(part).ok_or_else(|| {
            PathError(format!(
                "the path {path:?} does not match the input {}",
                truncated(input)
            ))
        })?;
    }
    Ok(at.clone())
}

/// Whether `path` matches something in `input` (for `IsPresent`).
pub fn present(path: &str, input: &Value) -> bool {
    get(path, input, &Value::Null).is_ok()
}

/// `ResultPath`: `None` (JSON null) keeps the input, `$` replaces it, `$.a.b` puts the
/// result there, creating objects on the way.
pub fn merge(result_path: Option<&str>, input: Value, result: Value) -> Result<Value, PathError> {
    let Some(path) = result_path else {
        return Ok(input);
    };
    let parts = fields(path, false)?;
    if parts.is_empty() {
        return Ok(result);
    }
    let mut root = input;
    if !root.is_object() {
        return Err(PathError(format!(
            "ResultPath {path:?} needs an object input, got {}",
            truncated(&root)
        )));
    }
    let mut at = &mut root;
    let (last, parents) = parts.split_last().expect("non-empty");
    for part in parents {
        let map = at
            .as_object_mut()
            .ok_or_else(|| PathError(format!("ResultPath {path:?} crosses a non-object")))?;
        at = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    at.as_object_mut()
        .ok_or_else(|| PathError(format!("ResultPath {path:?} crosses a non-object")))?
        .insert(last.to_string(), result);
    Ok(root)
}

/// Evaluates a payload template (`Parameters`, `ResultSelector`): keys ending in `.$`
/// take the value at their path, the rest are copied, objects are walked recursively.
pub fn template(template: &Value, input: &Value, context: &Value) -> Result<Value, PathError> {
    match template {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                if let Some(name) = key.strip_suffix(".$") {
                    let path = value
                        .as_str()
                        .ok_or_else(|| PathError(format!("{key:?} must be a path string")))?;
                    out.insert(name.to_string(), get(path, input, context)?);
                } else {
                    out.insert(key.clone(), self::template(value, input, context)?);
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|v| self::template(v, input, context))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// Checks every path of a template (for validating a definition).
pub fn check_template(template: &Value) -> Result<(), PathError> {
    match template {
        Value::Object(map) => map.iter().try_for_each(|(key, value)| {
            if key.ends_with(".$") {
                check(
                    value
                        .as_str()
                        .ok_or_else(|| PathError(format!("{key:?} must be a path string")))?,
                )
            } else {
                check_template(value)
            }
        }),
        Value::Array(items) => items.iter().try_for_each(check_template),
        _ => Ok(()),
    }
}

fn truncated(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}…", &s[..s.floor_char_boundary(200)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_templates_and_result_paths() {
        let input = json!({"a": {"b": 1}, "id": "x"});
        let ctx = json!({"Execution": {"Name": "run-1"}});
        assert_eq!(get("$.a.b", &input, &ctx).unwrap(), json!(1));
        assert_eq!(get("$", &input, &ctx).unwrap(), input);
        assert_eq!(
            get("$$.Execution.Name", &input, &ctx).unwrap(),
            json!("run-1")
        );
        assert!(get("$.missing", &input, &ctx).is_err());
        assert!(check("$.a[0]").is_err() && check("a.b").is_err() && check("$.a.b").is_ok());
        let t = json!({"k.$": "$.id", "fixed": 2, "nested": {"n.$": "$$.Execution.Name"}});
        assert_eq!(
            template(&t, &input, &ctx).unwrap(),
            json!({"k": "x", "fixed": 2, "nested": {"n": "run-1"}})
        );
        assert_eq!(
            merge(Some("$.r.s"), input.clone(), json!(5)).unwrap()["r"]["s"],
            json!(5)
        );
        assert_eq!(merge(Some("$"), input.clone(), json!(5)).unwrap(), json!(5));
        assert_eq!(merge(None, input.clone(), json!(5)).unwrap(), input);
        assert!(
            merge(Some("$.a.b.c"), input, json!(5)).is_err(),
            "b is a number"
        );
    }
}
