//! Real sockets on 127.0.0.1, real mutual TLS: authentication, echo, blobs, ractor_cluster
//! streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use troupe_transport::bulk::{broadcast_blob, recv_blob, send_blob};
use troupe_transport::certs::{ClusterCerts, NodeIdentity, generate_cluster};
use troupe_transport::{Node, QuicBidi, TransportError, peer_name, tls};

/// Deadline for anything that should happen promptly on loopback.
const DEADLINE: Duration = Duration::from_secs(20);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn cluster(names: &[&str]) -> ClusterCerts {
    generate_cluster(&names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
}

fn node(certs: &ClusterCerts, name: &str) -> Node {
    Node::bind(loopback(), &certs.identity(name).unwrap()).unwrap()
}

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("deadline passed")
}

/// `client` dials `server` (named `server_name`); both sides' handshake results.
async fn dial(
    client: &Node,
    server: &Node,
    server_name: &str,
) -> (
    Result<quinn::Connection, TransportError>,
    Result<quinn::Connection, TransportError>,
) {
    let addr = server.local_addr().unwrap();
    let (c, s) =
        within(async { tokio::join!(client.connect(addr, server_name), server.accept()) }).await;
    (c, s.expect("endpoint open"))
}

async fn connected(
    client: &Node,
    server: &Node,
    server_name: &str,
) -> (quinn::Connection, quinn::Connection) {
    let (c, s) = dial(client, server, server_name).await;
    (c.unwrap(), s.unwrap())
}

/// A client that the server refused may see its handshake finish first (TLS 1.3 checks the
/// client certificate last); then the connection must close at once with a crypto error.
async fn assert_client_refused(client_side: Result<quinn::Connection, TransportError>) {
    let err = match client_side {
        Err(e) => e,
        Ok(conn) => TransportError::Connection(within(conn.closed()).await),
    };
    assert_crypto_error(&err);
}

fn assert_crypto_error(err: &TransportError) {
    let text = err.to_string();
    let crypto = match err {
        TransportError::Connection(quinn::ConnectionError::TransportError(e)) => {
            (0x100..0x200).contains(&u64::from(e.code))
        }
        TransportError::Connection(quinn::ConnectionError::ConnectionClosed(c)) => {
            (0x100..0x200).contains(&u64::from(c.error_code))
        }
        _ => false,
    };
    assert!(
        crypto,
        "expected a TLS (crypto) connection error, got {text}"
    );
}

#[tokio::test]
async fn same_cluster_nodes_connect_and_echo() {
    let certs = cluster(&["learner", "sampler-0"]);
    let a = node(&certs, "learner");
    let b = node(&certs, "sampler-0");
    let (ab, ba) = connected(&a, &b, "sampler-0").await;
    assert_eq!(peer_name(&ab).as_deref(), Some("sampler-0"));
    assert_eq!(peer_name(&ba).as_deref(), Some("learner"));

    let echo = tokio::spawn(async move {
        let (mut send, mut recv) = ba.accept_bi().await.unwrap();
        let got = recv.read_to_end(1 << 20).await.unwrap();
        send.write_all(&got).await.unwrap();
        send.finish().unwrap();
        send.stopped().await.unwrap();
    });
    let (mut send, mut recv) = ab.open_bi().await.unwrap();
    send.write_all(b"hello troupe").await.unwrap();
    send.finish().unwrap();
    let back = within(recv.read_to_end(1 << 20)).await.unwrap();
    assert_eq!(back, b"hello troupe");
    within(echo).await.unwrap();
}

#[tokio::test]
async fn client_from_another_cluster_is_refused() {
    let ours = cluster(&["learner", "sampler-0"]);
    let theirs = cluster(&["learner", "sampler-0"]);
    let server = node(&ours, "sampler-0");

    // Worst case: the intruder knows our (public) CA certificate and uses a name of ours, but
    // its own certificate was signed by another CA.
    let n = theirs.node("learner").unwrap();
    let intruder_id = NodeIdentity::from_pem(
        ours.ca_cert_pem.as_bytes(),
        n.cert_pem.as_bytes(),
        n.key_pem.as_bytes(),
        "learner",
    )
    .unwrap();
    let intruder = Node::bind(loopback(), &intruder_id).unwrap();
    let (client_side, server_side) = dial(&intruder, &server, "sampler-0").await;
    let server_err = server_side.unwrap_err();
    assert_crypto_error(&server_err);
    assert_client_refused(client_side).await;

    // A node of the other cluster entirely (trusting only its own CA) fails too.
    let stranger = node(&theirs, "learner");
    let (client_side, server_side) = dial(&stranger, &server, "sampler-0").await;
    assert_crypto_error(&client_side.unwrap_err());
    assert!(server_side.is_err());
}

#[tokio::test]
async fn server_from_another_cluster_is_refused() {
    let ours = cluster(&["learner", "sampler-0"]);
    let theirs = cluster(&["learner", "sampler-0"]);
    let client = node(&ours, "learner");

    // The impostor trusts our CA (so it would accept us) but its certificate is foreign.
    let n = theirs.node("sampler-0").unwrap();
    let impostor_id = NodeIdentity::from_pem(
        ours.ca_cert_pem.as_bytes(),
        n.cert_pem.as_bytes(),
        n.key_pem.as_bytes(),
        "sampler-0",
    )
    .unwrap();
    let impostor = Node::bind(loopback(), &impostor_id).unwrap();
    let (client_side, server_side) = dial(&client, &impostor, "sampler-0").await;
    let err = client_side.unwrap_err();
    assert_crypto_error(&err);
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    assert!(server_side.is_err());
}

#[tokio::test]
async fn server_with_another_nodes_name_is_refused() {
    let certs = cluster(&["learner", "sampler-0", "sampler-1"]);
    let a = node(&certs, "learner");
    let b = node(&certs, "sampler-0");
    // b holds a valid cluster certificate, but not for the name we asked for.
    let (client_side, server_side) = dial(&a, &b, "sampler-1").await;
    assert_crypto_error(&client_side.unwrap_err());
    assert!(server_side.is_err());
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let certs = cluster(&["learner", "sampler-0"]);
    let server = node(&certs, "sampler-0");

    tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    let ca = certs.identity("learner").unwrap().ca().clone();
    roots.add(ca).unwrap();
    let mut tls_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls_cfg.alpn_protocols = vec![tls::ALPN.to_vec()];
    let cfg = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls_cfg).unwrap(),
    ));
    let anon = quinn::Endpoint::client(loopback()).unwrap();

    let addr = server.local_addr().unwrap();
    let connecting = anon.connect_with(cfg, addr, "sampler-0").unwrap();
    let (client_side, server_side) = within(async {
        tokio::join!(
            async { connecting.await.map_err(TransportError::from) },
            server.accept()
        )
    })
    .await;
    assert_crypto_error(&server_side.unwrap().unwrap_err());
    assert_client_refused(client_side).await;
}

#[tokio::test]
async fn blob_of_20_mb_round_trips() {
    let certs = cluster(&["learner", "sampler-0"]);
    let a = node(&certs, "learner");
    let b = node(&certs, "sampler-0");
    let (ab, ba) = connected(&a, &b, "sampler-0").await;

    let blob: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let started = Instant::now();
    let (sent, received) = within(async {
        tokio::join!(send_blob(&ab, 7, &blob, 1 << 20), async {
            recv_blob(ba.accept_uni().await?, 64 << 20).await
        })
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    sent.unwrap();
    let (id, got) = received.unwrap();
    assert_eq!(id, 7);
    assert!(got == blob, "payload differs");

    // Baseline in the same run: the same bytes on a bare stream, no framing or checksums.
    let started = Instant::now();
    let (sent, received) = within(async {
        tokio::join!(
            async {
                let mut send = ab.open_uni().await?;
                send.write_all(&blob).await?;
                send.finish()?;
                send.stopped().await?;
                Ok::<_, TransportError>(())
            },
            async {
                let mut recv = ba.accept_uni().await.unwrap();
                recv.read_to_end(64 << 20).await.unwrap()
            }
        )
    })
    .await;
    let bare = started.elapsed().as_secs_f64();
    sent.unwrap();
    assert_eq!(received.len(), blob.len());
    let mib = 20e6 / (1 << 20) as f64;
    eprintln!(
        "20 MB: blob {:.0} MiB/s, bare stream {:.0} MiB/s (blob/bare time ratio {:.2})",
        mib / secs,
        mib / bare,
        secs / bare
    );
}

#[tokio::test]
async fn oversized_blob_is_refused_and_the_sender_learns_it() {
    let certs = cluster(&["learner", "sampler-0"]);
    let a = node(&certs, "learner");
    let b = node(&certs, "sampler-0");
    let (ab, ba) = connected(&a, &b, "sampler-0").await;
    let blob = vec![1u8; 2 << 20];
    let (sent, received) = within(async {
        tokio::join!(send_blob(&ab, 1, &blob, 64 << 10), async {
            recv_blob(ba.accept_uni().await?, 1 << 20).await
        })
    })
    .await;
    assert!(
        matches!(received, Err(TransportError::BlobTooLarge { .. })),
        "{received:?}"
    );
    let err = sent.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::PeerStopped(1) | TransportError::Write(quinn::WriteError::Stopped(_))
        ),
        "{err}"
    );
    // The connection itself survives a rejected blob.
    let (sent, received) = within(async {
        tokio::join!(send_blob(&ab, 2, b"small", 4), async {
            recv_blob(ba.accept_uni().await?, 1 << 20).await
        })
    })
    .await;
    sent.unwrap();
    assert_eq!(received.unwrap(), (2, b"small".to_vec()));
}

#[tokio::test]
async fn broadcast_reaches_three_receivers() {
    let names = ["learner", "sampler-0", "sampler-1", "sampler-2"];
    let certs = cluster(&names);
    let learner = node(&certs, "learner");
    let mut outgoing = Vec::new();
    let mut receivers = Vec::new();
    for name in &names[1..] {
        let sampler = node(&certs, name);
        let (out, inc) = connected(&learner, &sampler, name).await;
        outgoing.push(out);
        receivers.push(tokio::spawn(async move {
            let _keep_endpoint = sampler;
            recv_blob(inc.accept_uni().await?, 16 << 20).await
        }));
    }
    let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let results = within(broadcast_blob(&outgoing, 11, &blob, 256 << 10)).await;
    assert_eq!(results.len(), 3);
    for r in results {
        r.unwrap();
    }
    for r in receivers {
        let (id, got) = within(r).await.unwrap().unwrap();
        assert_eq!(id, 11);
        assert!(got == blob);
    }
}

#[tokio::test]
async fn quic_bidi_halves_carry_bytes_both_ways() {
    use ractor_cluster::ClusterBidiStream;

    let certs = cluster(&["learner", "sampler-0"]);
    let a = node(&certs, "learner");
    let b = node(&certs, "sampler-0");
    let (ab, ba) = connected(&a, &b, "sampler-0").await;

    let opened: Box<dyn ClusterBidiStream> = Box::new(QuicBidi::open(&ab).await.unwrap());
    assert!(opened.peer_label().unwrap().starts_with("sampler-0@"));
    let (mut a_read, mut a_write) = opened.split();
    // The stream reaches the peer with its first bytes.
    a_write.write_all(b"ping").await.unwrap();
    a_write.flush().await.unwrap();

    let accepted: Box<dyn ClusterBidiStream> =
        Box::new(within(QuicBidi::accept(&ba)).await.unwrap());
    assert!(accepted.peer_label().unwrap().starts_with("learner@"));
    let (mut b_read, mut b_write) = accepted.split();
    let mut buf = [0u8; 4];
    within(b_read.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"ping");

    b_write.write_all(b"pong").await.unwrap();
    b_write.flush().await.unwrap();
    within(a_read.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"pong");

    // Shutting down a write half ends the peer's read half.
    a_write.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(b_read.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
}

mod cluster_session {
    use ractor::Actor;
    use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
    use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
    use tokio::sync::mpsc;

    use super::*;

    struct ReadyEvents {
        node: &'static str,
        tx: mpsc::UnboundedSender<(&'static str, Option<String>)>,
    }

    impl NodeEventSubscription for ReadyEvents {
        fn node_session_opened(&self, _: NodeServerSessionInformation) {}
        fn node_session_disconnected(&self, _: NodeServerSessionInformation) {}
        fn node_session_authenticated(&self, _: NodeServerSessionInformation) {}
        fn node_session_ready(&self, ses: NodeServerSessionInformation) {
            let _ = self.tx.send((self.node, ses.peer_name.map(|n| n.name)));
        }
    }

    async fn node_server(
        name: &'static str,
        tx: mpsc::UnboundedSender<(&'static str, Option<String>)>,
    ) -> ractor::ActorRef<NodeServerMessage> {
        let server = NodeServer::new(
            0,
            "cluster-cookie".into(),
            name.into(),
            "localhost".into(),
            None,
            Some(NodeConnectionMode::Isolated),
        );
        let (actor, _handle) = Actor::spawn(None, server, ()).await.unwrap();
        actor
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "test".into(),
                subscription: Box::new(ReadyEvents { node: name, tx }),
            })
            .unwrap();
        // An RPC is a mailbox barrier: the subscription is installed once it returns.
        ractor::call_t!(actor, NodeServerMessage::GetSessions, 5_000).unwrap();
        actor
    }

    #[tokio::test]
    async fn ractor_cluster_session_runs_over_a_quic_stream() {
        let certs = cluster(&["learner", "sampler-0"]);
        let a = node(&certs, "learner");
        let b = node(&certs, "sampler-0");
        let (ab, ba) = connected(&a, &b, "sampler-0").await;

        let (tx, mut rx) = mpsc::unbounded_channel();
        let server_a = node_server("learner", tx.clone()).await;
        let server_b = node_server("sampler-0", tx).await;

        let accept_b = server_b.clone();
        let acceptor = tokio::spawn(async move {
            let stream = QuicBidi::accept(&ba).await.unwrap();
            accept_b
                .cast(NodeServerMessage::ConnectionOpenedExternal {
                    stream: Box::new(stream),
                    is_server: true,
                })
                .unwrap();
            ba
        });
        let stream = QuicBidi::open(&ab).await.unwrap();
        ractor_cluster::client_connect_external(&server_a, Box::new(stream))
            .await
            .unwrap();

        let mut ready = Vec::new();
        while ready.len() < 2 {
            ready.push(within(rx.recv()).await.expect("subscription alive"));
        }
        ready.sort();
        assert_eq!(ready[0].0, "learner");
        assert!(
            ready[0].1.as_deref().unwrap().starts_with("sampler-0"),
            "{ready:?}"
        );
        assert_eq!(ready[1].0, "sampler-0");
        assert!(
            ready[1].1.as_deref().unwrap().starts_with("learner"),
            "{ready:?}"
        );
        let _ba = within(acceptor).await.unwrap();

        server_a.stop(None);
        server_b.stop(None);
    }
}
