//! A third-party kind that wraps an inner descriptor, the way `txsni:DIR:tcp:443` will:
//! it parses its own argument, hands the rest to the registry, wraps the inner listener
//! and adds facts to each connection.

mod common;

use common::builtin_kinds;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::task::{Context, Poll};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use torsion_endpoints::plugin::{Accept, Arguments, BoxFuture, EndpointKind, ServerEndpoint};
use torsion_endpoints::{
    Connection, Descriptor, Endpoint, Error, Listener, Registry, Result, TlsInfo, quote,
};

/// `tagged:NAME:<inner descriptor>`: connections claim the server name NAME.
struct TaggedKind;

#[derive(Debug)]
struct Tagged {
    name: String,
    inner: Endpoint,
}

impl EndpointKind for TaggedKind {
    fn prefix(&self) -> &str {
        "tagged"
    }

    fn usage(&self) -> &str {
        "tagged:NAME:<inner descriptor>"
    }

    fn parse(&self, mut args: Arguments, registry: &Registry) -> Result<Endpoint> {
        let name = args.next_positional().ok_or_else(|| args.missing("NAME"))?;
        let inner = args.into_inner_endpoint("inner descriptor", registry)?;
        Ok(Endpoint::new(Tagged { name, inner }))
    }
}

impl ServerEndpoint for Tagged {
    fn descriptor(&self) -> Descriptor {
        // The wrapper's own argument, then the inner descriptor's pieces.
        Descriptor::new("tagged")
            .with_arg(&self.name)
            .with_inner(&self.inner.descriptor())
    }

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(async move {
            let inner = self.inner.listen().await?;
            let local = inner.local_addr().clone();
            Ok(Listener::new(
                self.descriptor().to_string(),
                local,
                TaggedAccept {
                    inner,
                    name: self.name.clone(),
                },
            ))
        })
    }
}

struct TaggedAccept {
    inner: Listener,
    name: String,
}

impl Accept for TaggedAccept {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Connection>> {
        let connection = std::task::ready!(self.inner.poll_accept(cx))?;
        let mut info = connection.info().clone();
        let mut tls = TlsInfo::new();
        tls.sni = Some(self.name.clone());
        info.tls = Some(tls);
        // Re-wrap as a boxed stream, as a TLS kind wraps the inner connection.
        Poll::Ready(Ok(Connection::other(connection, info)))
    }
}

fn registry() -> Registry {
    let mut registry = Registry::default();
    assert!(registry.register(TaggedKind).is_none());
    registry
}

#[test]
fn a_wrapping_kind_parses_its_inner_descriptor_with_the_same_registry() {
    let registry = registry();
    let endpoint = registry
        .parse("TAGGED:example.org:tcp:8080:interface=127.0.0.1")
        .unwrap();
    assert_eq!(endpoint.kind(), "tagged");
    assert_eq!(
        endpoint.to_string(),
        "tagged:example.org:tcp:8080:interface=127.0.0.1"
    );
    let tagged = endpoint.downcast_ref::<Tagged>().unwrap();
    assert_eq!(tagged.inner.to_string(), "tcp:8080:interface=127.0.0.1");
    assert_eq!(registry.parse(&endpoint.to_string()).unwrap(), endpoint);
    // A wrapper may wrap a wrapper, and quoting carries through.
    let path = "/tmp/a:b.sock";
    let nested = registry
        .parse(&format!(
            "tagged:outer:tagged:inner:unix:{}:lockfile=0",
            quote(path)
        ))
        .unwrap();
    let outer = nested.downcast_ref::<Tagged>().unwrap();
    let inner = outer.inner.downcast_ref::<Tagged>().unwrap();
    assert_eq!(inner.inner.to_string(), r"unix:/tmp/a\:b.sock:lockfile=0");
    assert!(registry.prefixes().eq(builtin_kinds(&["tagged"])));
}

#[test]
fn inner_errors_quote_the_whole_descriptor() {
    let registry = registry();
    let err = registry.parse("tagged:example.org:tcp:99999").unwrap_err();
    assert!(
        err.to_string().starts_with(
            "invalid endpoint descriptor \"tagged:example.org:tcp:99999\": tcp: port \"99999\""
        ),
        "{err}"
    );
    let err = registry.parse("tagged:example.org").unwrap_err();
    assert!(
        matches!(err, Error::MissingArgument { ref argument, .. } if argument == "inner descriptor"),
        "{err}"
    );
    let err = registry.parse("tagged:example.org:tcpp:80").unwrap_err();
    let known = builtin_kinds(&["tagged"]).join(", ");
    assert!(
        err.to_string().contains(&format!(
            "unknown endpoint type \"tcpp\"; known types: {known}"
        )),
        "{err}"
    );
    // Without the plugin, the type is unknown and the built-ins are listed.
    let err = Endpoint::parse("tagged:x:tcp:80").unwrap_err();
    let known = builtin_kinds(&[]).join(", ");
    assert!(
        err.to_string().ends_with(&format!("known types: {known}")),
        "{err}"
    );
    let err = Endpoint::parse("8080").unwrap_err();
    assert!(
        err.to_string().ends_with("(did you mean tcp:8080?)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrapping_kind_adds_facts_to_each_connection() {
    let endpoint = registry()
        .parse("tagged:example.org:tcp:0:interface=127.0.0.1")
        .unwrap();
    let mut listener = endpoint.listen().await.unwrap();
    let addr = listener.local_addr().as_tcp().unwrap();
    let client = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(b"hi").unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    });
    let mut connection = listener.accept().await.unwrap();
    assert_eq!(connection.info().scheme(), "https");
    assert_eq!(
        connection.info().tls.as_ref().unwrap().sni.as_deref(),
        Some("example.org")
    );
    let mut buf = [0u8; 2];
    connection.read_exact(&mut buf).await.unwrap();
    connection.write_all(b"hello, example.org").await.unwrap();
    connection.shutdown().await.unwrap();
    assert_eq!(client.await.unwrap(), "hello, example.org");
}
