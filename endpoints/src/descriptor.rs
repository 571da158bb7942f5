//! The descriptor grammar: Twisted's `serverFromString` tokenising rules, written with nom.
//!
//! ```text
//! descriptor := piece (":" piece)*
//! piece      := key "=" value | positional
//! key        := (escape | any char but ":" "=" "\")*
//! positional := (escape | any char but ":" "=" "\")*
//! value      := (escape | any char but ":" "\")*      -- "=" is plain text here
//! escape     := "\" any char
//! ```
//!
//! The first piece is the endpoint type, matched case-insensitively.

use std::borrow::Cow;
use std::fmt;

use nom::branch::alt;
use nom::character::complete::{anychar, char, none_of};
use nom::combinator::opt;
use nom::multi::{fold_many0, separated_list1};
use nom::sequence::preceded;
use nom::{IResult, Parser};

use crate::error::{Error, Result};

/// A descriptor split into its pieces, before any kind has given them meaning.
///
/// `tcp:80:interface=127.0.0.1` is `kind` `"tcp"`, `args` `["80"]`, `kwargs`
/// `[("interface", "127.0.0.1")]`. The kind is stored in lower case. Keyword arguments keep
/// the order in which each key first appeared; a repeated key keeps its last value, as
/// Python's `**kwargs` does in Twisted. Positional arguments may follow keywords in the
/// text; their relative order is all that counts.
///
/// [`Display`](fmt::Display) prints the canonical form, which [`Descriptor::parse`] reads back to
/// an equal value: positionals first, then keywords, with `\`, `:` and (outside values) `=`
/// escaped by a backslash.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Descriptor {
    kind: String,
    args: Vec<String>,
    kwargs: Vec<(String, String)>,
}

impl Descriptor {
    /// Splits `text` into kind, positional and keyword arguments.
    ///
    /// # Errors
    /// [`Error::Syntax`] for an empty descriptor, a descriptor that starts with a keyword
    /// argument instead of the endpoint type, or a trailing lone backslash (where Twisted
    /// raises an unrelated exception).
    ///
    /// ```
    /// use torsion_endpoints::Descriptor;
    /// let d = Descriptor::parse(r"TCP6:8080:interface=\:\:1").unwrap();
    /// assert_eq!(d.kind(), "tcp6");
    /// assert_eq!(d.args(), ["8080"]);
    /// assert_eq!(d.kwarg("interface"), Some("::1"));
    /// ```
    pub fn parse(text: &str) -> Result<Descriptor> {
        let syntax = |column: usize, message: &str| Error::Syntax {
            descriptor: text.to_owned(),
            column,
            message: message.to_owned(),
        };
        let (rest, pieces) = match pieces(text) {
            Ok(parsed) => parsed,
            // Every piece may be empty, so the list parser always succeeds on well-formed
            // input; any failure is reported at the start.
            Err(_) => return Err(syntax(1, "cannot read the descriptor")),
        };
        if !rest.is_empty() {
            // Fragments stop only at ":" (consumed as a separator), at "=" (consumed inside a
            // piece) or at a backslash that has nothing after it.
            let column = text[..text.len() - rest.len()].chars().count() + 1;
            return Err(syntax(
                column,
                r"a trailing backslash escapes nothing; write \\ for a literal backslash",
            ));
        }
        let mut pieces = pieces.into_iter();
        let kind = match pieces.next() {
            Some(Piece::Positional(kind)) if !kind.is_empty() => kind.to_lowercase(),
            Some(Piece::Keyword(key, _)) => {
                return Err(syntax(
                    1,
                    &format!(
                        "the descriptor must start with the endpoint type, not the keyword argument {key:?} (for example tcp:8080)"
                    ),
                ));
            }
            _ => {
                return Err(syntax(
                    1,
                    "the descriptor must start with the endpoint type (for example tcp:8080)",
                ));
            }
        };
        let mut descriptor = Descriptor::new(kind);
        for piece in pieces {
            match piece {
                Piece::Positional(arg) => descriptor.args.push(arg),
                Piece::Keyword(key, value) => descriptor.set_kwarg(key, value),
            }
        }
        Ok(descriptor)
    }

    /// A descriptor of the given kind with no arguments; the kind is lower-cased.
    pub fn new(kind: impl Into<String>) -> Descriptor {
        Descriptor {
            kind: kind.into().to_lowercase(),
            args: Vec::new(),
            kwargs: Vec::new(),
        }
    }

    /// Appends a positional argument (builder style).
    pub fn with_arg(mut self, value: impl Into<String>) -> Descriptor {
        self.args.push(value.into());
        self
    }

    /// Sets a keyword argument, replacing an earlier value of the same key (builder style).
    pub fn with_kwarg(mut self, key: impl Into<String>, value: impl Into<String>) -> Descriptor {
        self.set_kwarg(key.into(), value.into());
        self
    }

    /// Appends `inner` (its kind, positionals and keywords) after this descriptor's own
    /// arguments: how a wrapping kind prints `txsni:/certs` around `tcp:443` (builder style).
    pub fn with_inner(mut self, inner: &Descriptor) -> Descriptor {
        self.args.push(inner.kind.clone());
        self.args.extend(inner.args.iter().cloned());
        for (key, value) in &inner.kwargs {
            self.set_kwarg(key.clone(), value.clone());
        }
        self
    }

    fn set_kwarg(&mut self, key: String, value: String) {
        match self.kwargs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.kwargs.push((key, value)),
        }
    }

    /// The endpoint type, lower case (`"tcp"`).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The positional arguments after the type, unescaped.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The keyword arguments, unescaped, in order of first appearance.
    pub fn kwargs(&self) -> &[(String, String)] {
        &self.kwargs
    }

    /// The value of keyword argument `key`, if given.
    pub fn kwarg(&self, key: &str) -> Option<&str> {
        self.kwargs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn into_parts(self) -> (String, Vec<String>, Vec<(String, String)>) {
        (self.kind, self.args, self.kwargs)
    }
}

impl fmt::Display for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote(&self.kind))?;
        for arg in &self.args {
            write!(f, ":{}", quote(arg))?;
        }
        for (key, value) in &self.kwargs {
            write!(f, ":{}={}", quote(key), quote_value(value))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Descriptor {
    type Err = Error;

    fn from_str(text: &str) -> Result<Descriptor> {
        Descriptor::parse(text)
    }
}

/// Escapes `text` so that it reads back as one positional argument (or key): `\`, `:` and
/// `=` get a backslash. Twisted's `quoteStringArgument` escapes only `\` and `:`, which is
/// enough for keyword values but not for positionals that contain `=`.
///
/// ```
/// use torsion_endpoints::{quote, Descriptor};
/// let path = "/srv/a:b=c";
/// let d = Descriptor::parse(&format!("unix:{}", quote(path))).unwrap();
/// assert_eq!(d.args(), [path]);
/// ```
pub fn quote(text: &str) -> Cow<'_, str> {
    escape(text, &['\\', ':', '='])
}

/// Escapes a keyword value: `\` and `:` get a backslash, `=` stays as it is.
fn quote_value(text: &str) -> Cow<'_, str> {
    escape(text, &['\\', ':'])
}

fn escape<'a>(text: &'a str, special: &[char]) -> Cow<'a, str> {
    if !text.contains(special) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

enum Piece {
    Positional(String),
    Keyword(String, String),
}

/// Characters up to (not including) an unescaped stop character or a lone trailing
/// backslash, with escapes resolved.
fn fragment<'a>(
    stops: &'static str,
) -> impl Parser<&'a str, Output = String, Error = nom::error::Error<&'a str>> {
    fold_many0(
        alt((preceded(char('\\'), anychar), none_of(stops))),
        String::new,
        |mut acc, c| {
            acc.push(c);
            acc
        },
    )
}

fn piece(input: &str) -> IResult<&str, Piece> {
    let (input, (first, value)) =
        (fragment(":=\\"), opt(preceded(char('='), fragment(":\\")))).parse(input)?;
    Ok((
        input,
        match value {
            Some(value) => Piece::Keyword(first, value),
            None => Piece::Positional(first),
        },
    ))
}

fn pieces(input: &str) -> IResult<&str, Vec<Piece>> {
    separated_list1(char(':'), piece).parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> (String, Vec<String>, Vec<(String, String)>) {
        Descriptor::parse(text).unwrap().into_parts()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn positional_and_keyword_arguments() {
        assert_eq!(
            split("tcp:80:interface=127.0.0.1"),
            (
                "tcp".into(),
                strings(&["80"]),
                pairs(&[("interface", "127.0.0.1")])
            )
        );
        assert_eq!(
            split("tcp:port=80:interface=192.168.1.1"),
            (
                "tcp".into(),
                vec![],
                pairs(&[("port", "80"), ("interface", "192.168.1.1")])
            )
        );
    }

    #[test]
    fn only_a_colon_ends_a_value() {
        assert_eq!(
            split("tcp:80:interface=a=b").2,
            pairs(&[("interface", "a=b")])
        );
        assert_eq!(split("x:a=b=c=d:e").2, pairs(&[("a", "b=c=d")]));
    }

    #[test]
    fn backslash_escapes_the_next_character() {
        assert_eq!(
            split(r"tcp6:8080:interface=\:\:1").2,
            pairs(&[("interface", "::1")])
        );
        assert_eq!(
            split(r"x:a\:b:c\=d:e\\f").1,
            strings(&["a:b", "c=d", r"e\f"])
        );
        // A key may contain escaped specials too, and an escaped ordinary char is itself.
        assert_eq!(split(r"x:k\=ey=v\al").2, pairs(&[("k=ey", "val")]));
    }

    #[test]
    fn empty_pieces_are_empty_positionals() {
        assert_eq!(split("x::").1, strings(&["", ""]));
        assert_eq!(split("x:a::b:").1, strings(&["a", "", "b", ""]));
        assert_eq!(split("x:=v").2, pairs(&[("", "v")]));
        assert_eq!(split("x:k=").2, pairs(&[("k", "")]));
    }

    #[test]
    fn positionals_may_follow_keywords_and_the_last_repeated_key_wins() {
        let (_, args, kwargs) = split("x:a=1:p:b=2:a=3:q");
        assert_eq!(args, strings(&["p", "q"]));
        assert_eq!(kwargs, pairs(&[("a", "3"), ("b", "2")]));
    }

    #[test]
    fn the_type_is_matched_case_insensitively() {
        assert_eq!(split("TCP:80").0, "tcp");
        assert_eq!(split("SyStEmD:domain=INET:index=0").0, "systemd");
    }

    #[test]
    fn a_trailing_backslash_is_a_syntax_error_at_its_column() {
        let err = Descriptor::parse(r"tcp:80\").unwrap_err();
        match &err {
            Error::Syntax { column, .. } => assert_eq!(*column, 7),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("trailing backslash"), "{err}");
        // An escaped backslash at the end is fine.
        assert_eq!(split(r"x:a\\").1, strings(&[r"a\"]));
        // Columns count characters, not bytes.
        match Descriptor::parse("unix:/tmp/é\\").unwrap_err() {
            Error::Syntax { column, .. } => assert_eq!(column, 12),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_descriptor_needs_a_type() {
        for text in ["", ":80", "port=80"] {
            let err = Descriptor::parse(text).unwrap_err();
            assert!(
                matches!(err, Error::Syntax { column: 1, .. }),
                "{text:?}: {err:?}"
            );
            assert!(err.to_string().contains("endpoint type"), "{err}");
        }
    }

    #[test]
    fn display_is_canonical_and_reads_back() {
        let d = Descriptor::parse(r"TCP:interface=a=b:x\:y:k\=z=\\").unwrap();
        assert_eq!(d.to_string(), r"tcp:x\:y:interface=a=b:k\=z=\\");
        assert_eq!(Descriptor::parse(&d.to_string()).unwrap(), d);
    }
}
