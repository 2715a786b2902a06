//! A strict parser of the OpenMetrics text format, for the tests that read `/metrics`: panics on
//! anything malformed, so a test that scrapes observer checks the format as well as the values.

use std::collections::{BTreeMap, BTreeSet};

/// Parses the subset of OpenMetrics observer emits (counters, gauges, info; no exemplars, no
/// timestamps). Panics on anything malformed.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub fn parse(text: &str) -> Vec<Sample> {
    let is_name = |s: &str, colon: bool| {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || (colon && f == ':'))
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || (colon && x == ':'))
    };
    assert!(text.ends_with("# EOF\n"), "must end with # EOF: {text}");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps = BTreeSet::new();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let lines: Vec<&str> = text.strip_suffix('\n').unwrap().split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" {
            assert_eq!(i, lines.len() - 1, "# EOF must be last");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let (kind, rest) = rest.split_once(' ').expect("descriptor");
            let (name, arg) = rest.split_once(' ').expect("descriptor argument");
            assert!(is_name(name, true), "bad family name {name:?}");
            match kind {
                "TYPE" => {
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "info",
                            "stateset",
                            "unknown",
                            "histogram",
                            "summary",
                            "gaugehistogram"
                        ]
                        .contains(&arg),
                        "type {arg}"
                    );
                    assert!(
                        types.insert(name.into(), arg.into()).is_none(),
                        "TYPE twice for {name}"
                    );
                }
                "HELP" => assert!(helps.insert(name.to_string()), "HELP twice for {name}"),
                "UNIT" => {}
                _ => panic!("unknown descriptor {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "empty line");
        // name{labels} value
        let (name, rest) = match line.find(['{', ' ']) {
            Some(j) => (&line[..j], &line[j..]),
            None => panic!("no value: {line:?}"),
        };
        assert!(is_name(name, true), "bad metric name in {line:?}");
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(body) => parse_labels(body, line),
            None => (BTreeMap::new(), rest),
        };
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("one space before the value: {line:?}"));
        assert!(
            !value.contains(' '),
            "observer emits no timestamps or exemplars: {line:?}"
        );
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        // Every sample belongs to a declared family, with the suffix its type requires.
        let family = types
            .iter()
            .find(|(f, t)| match t.as_str() {
                "counter" => name == format!("{f}_total") || name == format!("{f}_created"),
                "info" => name == format!("{f}_info"),
                _ => name == f.as_str(),
            })
            .unwrap_or_else(|| panic!("sample {name} has no TYPE: {text}"));
        if family.1 == "counter" {
            assert!(v >= 0.0, "negative counter {line:?}");
        }
        assert!(
            seen.insert((name.to_string(), labels.clone())),
            "duplicate series {line:?}"
        );
        out.push(Sample {
            name: name.into(),
            labels,
            value: v,
        });
    }
    out
}

/// `name="value",...}` -> the labels and what follows the `}`.
fn parse_labels<'a>(b: &'a str, line: &str) -> (BTreeMap<String, String>, &'a str) {
    let is_label = |s: &str| {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
    };
    let mut labels = BTreeMap::new();
    if let Some(rest) = b.strip_prefix('}') {
        return (labels, rest);
    }
    let mut i = 0;
    loop {
        let eq = b[i..]
            .find('=')
            .unwrap_or_else(|| panic!("label without = in {line:?}"))
            + i;
        let name = &b[i..eq];
        assert!(is_label(name), "bad label name {name:?} in {line:?}");
        assert!(
            b[eq + 1..].starts_with('"'),
            "label value must be quoted: {line:?}"
        );
        let mut j = eq + 2;
        let mut value = String::new();
        loop {
            let c = b[j..]
                .chars()
                .next()
                .unwrap_or_else(|| panic!("unterminated value: {line:?}"));
            j += c.len_utf8();
            match c {
                '\\' => {
                    let e = b[j..].chars().next().expect("dangling escape");
                    j += e.len_utf8();
                    match e {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => panic!("bad escape \\{other} in {line:?}"),
                    }
                }
                '"' => break,
                '\n' => panic!("raw newline in a label value"),
                c => value.push(c),
            }
        }
        assert!(
            labels.insert(name.to_string(), value).is_none(),
            "duplicate label in {line:?}"
        );
        match b[j..].chars().next() {
            Some(',') => i = j + 1,
            Some('}') => return (labels, &b[j + 1..]),
            other => panic!("expected , or }} after a label, got {other:?} in {line:?}"),
        }
    }
}

/// The first sample named `name` with these labels (others may be present too).
pub fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}
