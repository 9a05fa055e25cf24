//! Dockerfile words: quotes, escapes and `$VAR` / `${VAR}` /
//! `${VAR:-default}` / `${VAR:+alt}` / `${VAR:?msg}` expansion, as
//! BuildKit's shell lexer does them for `FROM`, `COPY`, `ENV`, `WORKDIR`...
//! (`RUN`, `CMD` and `ENTRYPOINT` are left to the shell).

use anyhow::{bail, Result};

/// Variables visible at a step: `ARG`s then `ENV`s (later ones win).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vars(pub Vec<(String, String)>);

impl Vars {
    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` (replacing an earlier value).
    pub fn set(&mut self, name: &str, value: &str) {
        self.0.retain(|(k, _)| k != name);
        self.0.push((name.to_string(), value.to_string()));
    }
}

/// Expands one word: removes quotes and escapes, substitutes variables.
pub fn expand(word: &str, vars: &Vars, escape: char) -> Result<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::with_capacity(word.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == escape {
            if let Some(&n) = chars.get(i + 1) {
                out.push(n);
                i += 2;
            } else {
                out.push(c);
                i += 1;
            }
        } else if c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                out.push(chars[i]);
                i += 1;
            }
            if i >= chars.len() {
                bail!("unterminated single quote in {word:?}");
            }
            i += 1;
        } else if c == '"' {
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    bail!("unterminated double quote in {word:?}");
                };
                if d == '"' {
                    i += 1;
                    break;
                }
                if d == escape && matches!(chars.get(i + 1), Some('"' | '$')) {
                    out.push(chars[i + 1]);
                    i += 2;
                } else if d == escape && chars.get(i + 1) == Some(&escape) {
                    out.push(escape);
                    i += 2;
                } else if d == '$' {
                    i = var(&chars, i, vars, escape, &mut out)?;
                } else {
                    out.push(d);
                    i += 1;
                }
            }
        } else if c == '$' {
            i = var(&chars, i, vars, escape, &mut out)?;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands the variable at `chars[i] == '$'`; returns the index after it.
fn var(chars: &[char], i: usize, vars: &Vars, escape: char, out: &mut String) -> Result<usize> {
    let mut j = i + 1;
    match chars.get(j) {
        Some('{') => {
            j += 1;
            let start = j;
            while j < chars.len() && is_name_char(chars[j]) {
                j += 1;
            }
            let name: String = chars[start..j].iter().collect();
            if name.is_empty() {
                bail!("bad substitution: missing variable name");
            }
            if chars.get(j) == Some(&'}') {
                out.push_str(vars.get(&name).unwrap_or_default());
                return Ok(j + 1);
            }
            // ${name:-word} ${name-word} ${name:+word} ${name+word} ${name:?w}
            let colon = chars.get(j) == Some(&':');
            if colon {
                j += 1;
            }
            let op = *chars
                .get(j)
                .ok_or_else(|| anyhow::anyhow!("unterminated ${{{name}"))?;
            if !matches!(op, '-' | '+' | '?') {
                bail!("unsupported modifier {op:?} in ${{{name}}}");
            }
            j += 1;
            // The word runs to the matching brace.
            let wstart = j;
            let mut depth = 1;
            while j < chars.len() {
                match chars[j] {
                    c if c == escape => j += 1,
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            if j >= chars.len() {
                bail!("unterminated ${{{name}...");
            }
            let word: String = chars[wstart..j].iter().collect();
            let value = vars.get(&name);
            let set = match value {
                Some(v) => !(colon && v.is_empty()),
                None => false,
            };
            match op {
                '-' if set => out.push_str(value.unwrap_or_default()),
                '-' => out.push_str(&expand(&word, vars, escape)?),
                '+' if set => out.push_str(&expand(&word, vars, escape)?),
                '+' => {}
                _ if set => out.push_str(value.unwrap_or_default()),
                _ => bail!("{name}: {}", expand(&word, vars, escape)?),
            }
            Ok(j + 1)
        }
        Some(c) if is_name_char(*c) && !c.is_ascii_digit() => {
            let start = j;
            while j < chars.len() && is_name_char(chars[j]) {
                j += 1;
            }
            let name: String = chars[start..j].iter().collect();
            out.push_str(vars.get(&name).unwrap_or_default());
            Ok(j)
        }
        _ => {
            out.push('$');
            Ok(i + 1)
        }
    }
}

/// Splits `raw` at unquoted, unescaped whitespace; quotes and escapes stay
/// (for [`expand`]).
pub fn split_words(raw: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut it = raw.chars().peekable();
    let mut has = false;
    while let Some(c) = it.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = it.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c == escape => {
                cur.push(c);
                if let Some(n) = it.next() {
                    cur.push(n);
                }
                has = true;
            }
            None if c == '"' || c == '\'' => {
                cur.push(c);
                quote = Some(c);
                has = true;
            }
            None if c.is_whitespace() => {
                if has {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            None => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        words.push(cur);
    }
    words
}

/// `KEY=VALUE ...` pairs of `ENV` and `LABEL` (also the old `ENV KEY
/// value with spaces` form), values expanded.
pub fn pairs(raw: &str, vars: &Vars, escape: char, what: &str) -> Result<Vec<(String, String)>> {
    let words = split_words(raw, escape);
    let Some(first) = words.first() else {
        bail!("{what} needs at least one argument");
    };
    if !first.contains('=') {
        // Legacy form: the first word is the key, the rest the value.
        let rest = raw.trim_start()[first.len()..].trim();
        if what == "LABEL" || rest.is_empty() {
            bail!("{what} names must be followed by =VALUE: {first:?}");
        }
        return Ok(vec![(
            expand(first, vars, escape)?,
            expand(rest, vars, escape)?,
        )]);
    }
    let mut out = Vec::new();
    for w in &words {
        let Some((k, v)) = w.split_once('=') else {
            bail!("{what}: {w:?} is not KEY=VALUE");
        };
        let k = expand(k, vars, escape)?;
        if k.is_empty() {
            bail!("{what}: empty name in {w:?}");
        }
        out.push((k, expand(v, vars, escape)?));
    }
    Ok(out)
}

/// `NAME[=DEFAULT] ...` of `ARG`, defaults expanded.
pub fn args(raw: &str, vars: &Vars, escape: char) -> Result<Vec<(String, Option<String>)>> {
    let words = split_words(raw, escape);
    if words.is_empty() {
        bail!("ARG needs at least one argument");
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), Some(expand(v, vars, escape)?))),
            None => Ok((w.to_string(), None)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars(vec![
            ("A".into(), "one".into()),
            ("EMPTY".into(), String::new()),
        ])
    }

    #[test]
    fn expansion() {
        let v = vars();
        let e = |w: &str| expand(w, &v, '\\').unwrap();
        assert_eq!(e("$A/${A}x"), "one/onex");
        assert_eq!(e("${NOPE:-def}-${EMPTY:-d2}-${EMPTY-d3}"), "def-d2-");
        assert_eq!(e("${A:+alt}${NOPE:+alt}"), "alt");
        assert_eq!(e("'$A' \"$A\" \\$A"), "$A one $A");
        assert_eq!(e("a\\ b"), "a b");
        assert_eq!(e("${NOPE:-${A}}"), "one");
        assert_eq!(e("cost $5"), "cost $5");
        assert!(expand("${NOPE:?is required}", &v, '\\')
            .unwrap_err()
            .to_string()
            .contains("is required"));
        assert_eq!(expand("a`$b", &v, '`').unwrap(), "a$b");
    }

    #[test]
    fn env_pairs() {
        let v = vars();
        assert_eq!(
            pairs("X=1 Y=\"two words\" Z=$A", &v, '\\', "ENV").unwrap(),
            vec![
                ("X".into(), "1".into()),
                ("Y".into(), "two words".into()),
                ("Z".into(), "one".into())
            ]
        );
        assert_eq!(
            pairs("KEY some value $A", &v, '\\', "ENV").unwrap(),
            vec![("KEY".into(), "some value one".into())]
        );
        assert!(pairs("X=1 Y", &v, '\\', "ENV").is_err());
        assert_eq!(
            args("V=1 W", &v, '\\').unwrap(),
            vec![("V".into(), Some("1".into())), ("W".into(), None)]
        );
    }
}
