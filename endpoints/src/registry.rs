//! Endpoint kinds as plugins: the registry, the argument binder they parse with, and the
//! [`Endpoint`] value they produce.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::descriptor::Descriptor;
use crate::error::{Error, Result};
use crate::listener::Listener;

/// A future boxed for use in object-safe traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One endpoint type: a prefix such as `tcp` and the parser that turns its arguments into
/// an [`Endpoint`].
///
/// This is the seam through which the built-in kinds and third-party kinds alike are added
/// to a [`Registry`]. A kind that wraps another endpoint (as `txsni:DIR:tcp:443` wraps
/// `tcp:443`) takes its own arguments from [`Arguments`] and hands the rest to
/// [`Arguments::into_inner_endpoint`], which parses them with the same registry.
pub trait EndpointKind: Send + Sync + 'static {
    /// The type prefix, lower case, without the colon (`"tcp"`).
    fn prefix(&self) -> &str;

    /// One line of usage, printed in errors: `"tcp:port[:interface][:backlog]"`.
    fn usage(&self) -> &str;

    /// Builds the endpoint from the arguments that followed the prefix.
    ///
    /// # Errors
    /// Any parse-time [`Error`] variant; [`Arguments`] and [`Bound`] build them with the
    /// descriptor text and this kind's usage filled in.
    fn parse(&self, args: Arguments, registry: &Registry) -> Result<Endpoint>;
}

/// A parsed endpoint of some kind: what it prints as, and how it opens its listener.
///
/// Implemented by each kind's endpoint type ([`TcpEndpoint`](crate::kinds::TcpEndpoint), ...) and
/// by third-party kinds. The `Any` supertrait lets callers inspect the concrete type
/// through [`Endpoint::downcast_ref`].
pub trait ServerEndpoint: fmt::Debug + Any + Send + Sync {
    /// The canonical descriptor: parsing its `Display` form gives an equal endpoint.
    fn descriptor(&self) -> Descriptor;

    /// Binds and starts listening.
    ///
    /// Must be called within a tokio runtime. Errors are [`Error::Listen`],
    /// [`Error::AddressInUse`] or [`Error::Systemd`].
    fn listen(&self) -> BoxFuture<'_, Result<Listener>>;

    /// The socket-level endpoints (`tcp:`, `tcp6:`, `unix:`, `systemd:`) whose sockets this
    /// one listens through: itself for those kinds, the TCP endpoint of `ssl:` and `tls:`,
    /// the inner endpoint's for wrappers (`txsni:`, `txacme:`, `haproxy:`).
    ///
    /// A supervisor listens on these, then passes their sockets to worker processes (see
    /// [`crate::inherited_name`]), whose endpoints adopt them instead of binding. The
    /// default, for kinds that do not say, is none: such an endpoint cannot be shared.
    fn sockets(&self) -> Vec<Endpoint> {
        Vec::new()
    }

    /// Work this endpoint does beside accepting connections that must run in one process
    /// only when several processes share its sockets: for `txacme:`, `le:` and `lets:`, the
    /// ACME manager that issues and renews certificates into the directory. Each future runs
    /// until it is dropped, within a tokio runtime.
    ///
    /// A process serving alone needs none of this: [`ServerEndpoint::listen`] starts the
    /// work. A supervisor that opens [`ServerEndpoint::sockets`] for worker processes runs
    /// these futures itself, and its workers call [`crate::background_elsewhere`] before
    /// they listen, so that exactly one process does the work. The default, for kinds with
    /// none, is none; wrappers return their inner endpoint's.
    ///
    /// # Errors
    /// [`Error::Listen`] naming the endpoint when the work cannot be set up (an ACME
    /// directory that cannot be created, a `cacert=` file that cannot be used).
    fn background(&self) -> Result<Vec<BoxFuture<'static, ()>>> {
        Ok(Vec::new())
    }
}

/// A parsed, inspectable endpoint: parse it from a descriptor, print it back, listen on it.
///
/// `FromStr` uses the built-in kinds ([`Registry::default`]); `Display` prints the canonical
/// descriptor with defaults left out and special characters quoted. Two endpoints are
/// equal when their canonical descriptors are.
///
/// ```
/// use torsion_endpoints::Endpoint;
/// use torsion_endpoints::kinds::TcpEndpoint;
/// let endpoint: Endpoint = "TCP:port=8080:interface=127.0.0.1:backlog=1024".parse().unwrap();
/// assert_eq!(endpoint.kind(), "tcp");
/// assert_eq!(endpoint.to_string(), "tcp:8080:interface=127.0.0.1");
/// assert_eq!(endpoint.downcast_ref::<TcpEndpoint>().unwrap().port(), 8080);
/// ```
#[derive(Clone)]
pub struct Endpoint(Arc<dyn ServerEndpoint>);

impl Endpoint {
    /// Wraps a kind's endpoint value.
    pub fn new(endpoint: impl ServerEndpoint) -> Endpoint {
        Endpoint(Arc::new(endpoint))
    }

    /// Parses `text` with the built-in kinds; the same as `text.parse()`.
    ///
    /// # Errors
    /// Any parse-time [`Error`] variant.
    pub fn parse(text: &str) -> Result<Endpoint> {
        Registry::default().parse(text)
    }

    /// The endpoint type, lower case (`"tcp"`).
    pub fn kind(&self) -> String {
        self.0.descriptor().kind().to_owned()
    }

    /// The canonical descriptor.
    pub fn descriptor(&self) -> Descriptor {
        self.0.descriptor()
    }

    /// The concrete endpoint, if it is a `T`.
    pub fn downcast_ref<T: ServerEndpoint>(&self) -> Option<&T> {
        let any: &dyn Any = &*self.0;
        any.downcast_ref::<T>()
    }

    /// The socket-level endpoints it listens through; see [`ServerEndpoint::sockets`].
    pub fn sockets(&self) -> Vec<Endpoint> {
        self.0.sockets()
    }

    /// The work to run in one process of several sharing its sockets; see
    /// [`ServerEndpoint::background`].
    ///
    /// # Errors
    /// [`Error::Listen`] when the work cannot be set up.
    pub fn background(&self) -> Result<Vec<BoxFuture<'static, ()>>> {
        self.0.background()
    }

    /// Binds and starts listening; see [`ServerEndpoint::listen`].
    ///
    /// # Errors
    /// [`Error::Listen`], [`Error::AddressInUse`] or [`Error::Systemd`], each naming this
    /// endpoint and what the operating system said.
    pub async fn listen(&self) -> Result<Listener> {
        self.0.listen().await
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.descriptor(), f)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Endpoint) -> bool {
        self.descriptor() == other.descriptor()
    }
}

impl Eq for Endpoint {}

impl std::str::FromStr for Endpoint {
    type Err = Error;

    fn from_str(text: &str) -> Result<Endpoint> {
        Endpoint::parse(text)
    }
}

/// The endpoint kinds known by prefix.
///
/// [`Registry::default`] holds the built-in kinds: `tcp`, `tcp6`, `unix` and `systemd`;
/// with feature `tls`, `ssl`, `txsni` and `tls`; with feature `acme`, `txacme`, `le` and
/// `lets`.
/// [`Registry::register`] adds more or replaces one.
///
/// ```
/// use torsion_endpoints::plugin::{Arguments, EndpointKind};
/// use torsion_endpoints::{Endpoint, Registry, Result};
///
/// /// `local:PORT` is `tcp:PORT:interface=127.0.0.1`.
/// struct Local;
/// impl EndpointKind for Local {
///     fn prefix(&self) -> &str { "local" }
///     fn usage(&self) -> &str { "local:port" }
///     fn parse(&self, args: Arguments, registry: &Registry) -> Result<Endpoint> {
///         let bound = args.bind(&["port"])?;
///         let port = bound.required("port")?;
///         registry.parse(&format!("tcp:{port}:interface=127.0.0.1"))
///     }
/// }
///
/// let mut registry = Registry::default();
/// registry.register(Local);
/// assert_eq!(registry.parse("local:80").unwrap().to_string(), "tcp:80:interface=127.0.0.1");
/// ```
#[derive(Clone)]
pub struct Registry {
    kinds: BTreeMap<String, Arc<dyn EndpointKind>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Registry {
    /// A registry with no kinds at all.
    pub fn empty() -> Registry {
        Registry {
            kinds: BTreeMap::new(),
        }
    }

    /// Adds `kind` under its prefix (lower-cased), returning the kind it replaced, if any.
    pub fn register(&mut self, kind: impl EndpointKind) -> Option<Arc<dyn EndpointKind>> {
        self.kinds
            .insert(kind.prefix().to_lowercase(), Arc::new(kind))
    }

    /// The registered prefixes, sorted.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Parses a descriptor string into an endpoint.
    ///
    /// # Errors
    /// [`Error::Syntax`] from the grammar, [`Error::UnknownKind`] listing the registered
    /// prefixes, or whatever the kind's parser reports.
    pub fn parse(&self, text: &str) -> Result<Endpoint> {
        let descriptor = Descriptor::parse(text)?;
        self.parse_descriptor(descriptor, text)
    }

    /// Parses an already split descriptor. `source` is the text quoted in error messages
    /// (for a wrapped descriptor, the whole text the user wrote).
    ///
    /// # Errors
    /// As [`Registry::parse`], without the syntax errors.
    pub fn parse_descriptor(&self, descriptor: Descriptor, source: &str) -> Result<Endpoint> {
        // Quoted in errors only, where a password (`store=redis\://\:s3cret@...`) must not be.
        let source = &*without_passwords(source);
        let Some(kind) = self.kinds.get(descriptor.kind()) else {
            let written = descriptor.kind();
            let hint = if !written.is_empty() && written.bytes().all(|b| b.is_ascii_digit()) {
                format!(" (did you mean tcp:{written}?)")
            } else {
                String::new()
            };
            return Err(Error::UnknownKind {
                descriptor: source.to_owned(),
                kind: written.to_owned(),
                known: self.kinds.keys().cloned().collect(),
                hint,
            });
        };
        let (prefix, args, kwargs) = descriptor.into_parts();
        let arguments = Arguments {
            source: source.to_owned(),
            kind: prefix,
            usage: kind.usage().to_owned(),
            args: args.into(),
            taken: 0,
            kwargs,
        };
        kind.parse(arguments, self)
    }
}

/// `text` with the password of every URL in it (`scheme://user:password@host`, colons
/// escaped or not) given as `***`.
pub(crate) fn without_passwords(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme + 3);
        shown.push_str(head);
        let authority = tail.find('/').map_or(tail, |end| &tail[..end]);
        match (authority.find('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                shown.push_str(&tail[..=colon]);
                shown.push_str("***");
                rest = &tail[at..];
            }
            _ => rest = tail,
        }
    }
    shown.push_str(rest);
    std::borrow::Cow::Owned(shown)
}

/// The arguments after a descriptor's prefix, as a kind's parser receives them.
///
/// Most kinds call [`Arguments::bind`] with their parameter names, which binds
/// positionals and keywords the way Python binds `*args, **kwargs` to a Twisted parser
/// function. Wrapping kinds take their own arguments one by one
/// ([`Arguments::next_positional`], [`Arguments::take_kwarg`]) and pass the rest on with
/// [`Arguments::into_inner_endpoint`].
#[derive(Debug)]
pub struct Arguments {
    source: String,
    kind: String,
    usage: String,
    args: VecDeque<String>,
    taken: usize,
    kwargs: Vec<(String, String)>,
}

impl Arguments {
    /// The whole descriptor text, as quoted in errors.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The kind's prefix.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Removes and returns the next positional argument.
    pub fn next_positional(&mut self) -> Option<String> {
        let value = self.args.pop_front()?;
        self.taken += 1;
        Some(value)
    }

    /// Removes and returns keyword argument `key`.
    pub fn take_kwarg(&mut self, key: &str) -> Option<String> {
        let index = self.kwargs.iter().position(|(k, _)| k == key)?;
        Some(self.kwargs.remove(index).1)
    }

    /// Binds the remaining arguments to `params`, in order, as Python binds a call to
    /// `def parse(param0, param1=..., ...)`: positionals fill parameters from the left,
    /// keywords by name.
    ///
    /// # Errors
    /// [`Error::TooManyArguments`] for a positional beyond the last parameter,
    /// [`Error::UnknownKeyword`] for a keyword that names no parameter (listing them),
    /// [`Error::DuplicateArgument`] for a parameter given both ways.
    pub fn bind(mut self, params: &[&str]) -> Result<Bound> {
        if self.args.len() > params.len() {
            let position = params.len() + 1;
            return Err(Error::TooManyArguments {
                value: self.args[params.len()].clone(),
                position: self.taken + position,
                descriptor: self.source,
                kind: self.kind,
                usage: self.usage,
            });
        }
        let mut values: Vec<(String, Option<String>)> = params
            .iter()
            .map(|name| (name.to_string(), self.args.pop_front()))
            .collect();
        for (key, value) in std::mem::take(&mut self.kwargs) {
            let Some(slot) = values.iter_mut().find(|(name, _)| *name == key) else {
                return Err(Error::UnknownKeyword {
                    descriptor: self.source,
                    kind: self.kind,
                    keyword: key,
                    valid: params.iter().map(|p| p.to_string()).collect(),
                });
            };
            if slot.1.is_some() {
                return Err(Error::DuplicateArgument {
                    descriptor: self.source,
                    kind: self.kind,
                    argument: key,
                    usage: self.usage,
                });
            }
            slot.1 = Some(value);
        }
        Ok(Bound {
            source: self.source,
            kind: self.kind,
            usage: self.usage,
            values,
        })
    }

    /// Parses what is left (positionals, then keywords) as a descriptor of its own, the
    /// first positional being its type, with the same registry. For `txsni:/certs:tcp:443`
    /// after the directory was taken, that is `tcp:443`.
    ///
    /// # Errors
    /// [`Error::MissingArgument`] naming `argument` when nothing is left; otherwise
    /// whatever parsing the inner descriptor reports, quoting the whole outer descriptor.
    pub fn into_inner_endpoint(mut self, argument: &str, registry: &Registry) -> Result<Endpoint> {
        let kind = match self.args.pop_front() {
            Some(kind) if !kind.is_empty() => kind,
            _ => {
                return Err(Error::MissingArgument {
                    descriptor: self.source,
                    kind: self.kind,
                    argument: argument.to_owned(),
                    usage: self.usage,
                });
            }
        };
        let mut inner = Descriptor::new(kind);
        for arg in self.args {
            inner = inner.with_arg(arg);
        }
        for (key, value) in self.kwargs {
            inner = inner.with_kwarg(key, value);
        }
        registry.parse_descriptor(inner, &self.source)
    }

    /// An [`Error::InvalidValue`] for this descriptor and kind.
    pub fn invalid(&self, argument: &str, value: &str, expected: &str) -> Error {
        invalid(&self.source, &self.kind, argument, value, expected)
    }

    /// An [`Error::MissingArgument`] for this descriptor and kind.
    pub fn missing(&self, argument: &str) -> Error {
        Error::MissingArgument {
            descriptor: self.source.clone(),
            kind: self.kind.clone(),
            argument: argument.to_owned(),
            usage: self.usage.clone(),
        }
    }
}

fn invalid(source: &str, kind: &str, argument: &str, value: &str, expected: &str) -> Error {
    Error::InvalidValue {
        descriptor: source.to_owned(),
        kind: kind.to_owned(),
        argument: argument.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

/// Arguments bound to a kind's parameter names by [`Arguments::bind`].
#[derive(Debug)]
pub struct Bound {
    source: String,
    kind: String,
    usage: String,
    values: Vec<(String, Option<String>)>,
}

impl Bound {
    /// The value given for parameter `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The value given for parameter `name`.
    ///
    /// # Errors
    /// [`Error::MissingArgument`] with the kind's usage line when it was not given.
    pub fn required(&self, name: &str) -> Result<&str> {
        self.get(name).ok_or_else(|| self.missing(name))
    }

    /// An [`Error::MissingArgument`] naming `argument`, with the kind's usage line.
    pub fn missing(&self, argument: &str) -> Error {
        Error::MissingArgument {
            descriptor: self.source.clone(),
            kind: self.kind.clone(),
            argument: argument.to_owned(),
            usage: self.usage.clone(),
        }
    }

    /// Converts the value of parameter `name` with `convert`, or gives `default` when it
    /// was not given.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] quoting the value and `expected` when `convert` returns
    /// `None`.
    pub fn parse_or<T>(
        &self,
        name: &str,
        default: T,
        expected: &str,
        convert: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => convert(value).ok_or_else(|| self.invalid(name, value, expected)),
        }
    }

    /// Converts the required value of parameter `name` with `convert`.
    ///
    /// # Errors
    /// [`Error::MissingArgument`] or [`Error::InvalidValue`], as above.
    pub fn parse_required<T>(
        &self,
        name: &str,
        expected: &str,
        convert: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T> {
        let value = self.required(name)?;
        convert(value).ok_or_else(|| self.invalid(name, value, expected))
    }

    /// An [`Error::InvalidValue`] for this descriptor and kind.
    pub fn invalid(&self, argument: &str, value: &str, expected: &str) -> Error {
        invalid(&self.source, &self.kind, argument, value, expected)
    }
}
