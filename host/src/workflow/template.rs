//! `${param}` references in task parameters, and TOML values turned into JSON.
//!
//! A string that is exactly `${name}` becomes the parameter's value with its type (a number
//! stays a number); `${name}` inside a longer string is replaced by its text. `$${` escapes.

use std::collections::BTreeMap;

use serde_json::Value as Json;

pub(crate) type Params = BTreeMap<String, Json>;

/// Converts a TOML value to JSON, resolving `${name}` references in its strings.
pub(crate) fn substitute(value: &toml::Value, params: &Params) -> Result<Json, String> {
    Ok(match value {
        toml::Value::String(s) => {
            if let Some(name) = whole_reference(s) {
                lookup(name, params)?.clone()
            } else {
                Json::String(substitute_str(s, params)?)
            }
        }
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("{f} cannot be represented in JSON"))?,
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(
            items
                .iter()
                .map(|v| substitute(v, params))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, params)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Replaces every `${name}` in `text` by the parameter's text.
pub(crate) fn substitute_str(text: &str, params: &Params) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix("${") {
            let end = reference
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in \"{text}\""))?;
            match lookup(&reference[..end], params)? {
                Json::String(s) => out.push_str(s),
                other => out.push_str(&other.to_string()),
            }
            rest = &reference[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn whole_reference(s: &str) -> Option<&str> {
    let name = s.strip_prefix("${")?.strip_suffix('}')?;
    (!name.contains(['{', '}', '$'])).then_some(name)
}

fn lookup<'a>(name: &str, params: &'a Params) -> Result<&'a Json, String> {
    params.get(name).ok_or_else(|| {
        if params.is_empty() {
            format!("unknown parameter `{name}` (this workflow declares none)")
        } else {
            let names: Vec<&str> = params.keys().map(String::as_str).collect();
            format!("unknown parameter `{name}`; declared: {}", names.join(", "))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params::from([
            ("n".to_owned(), Json::from(3)),
            ("who".to_owned(), Json::from("world")),
        ])
    }

    #[test]
    fn whole_references_keep_their_type() {
        let v = substitute(&toml::Value::String("${n}".into()), &params());
        assert_eq!(v, Ok(Json::from(3)));
    }

    #[test]
    fn embedded_references_become_text() {
        assert_eq!(
            substitute_str("hello ${who}, ${n} times", &params()),
            Ok("hello world, 3 times".to_owned())
        );
        assert_eq!(
            substitute_str("cost: $5 $${n}", &params()),
            Ok("cost: $5 ${n}".to_owned())
        );
    }

    #[test]
    fn unknown_and_unclosed_references_are_errors() {
        let e = substitute_str("${nope}", &params()).expect_err("unknown");
        assert!(e.contains("declared: n, who"), "{e}");
        assert!(substitute_str("${n", &params()).is_err());
    }

    #[test]
    fn tables_and_arrays_are_walked() {
        let value: toml::Table =
            toml::from_str("x = { list = [\"${n}\", 2], s = \"${who}!\" }").expect("valid toml");
        let json = substitute(&value["x"], &params()).expect("substitutes");
        assert_eq!(json, serde_json::json!({ "list": [3, 2], "s": "world!" }));
    }
}
