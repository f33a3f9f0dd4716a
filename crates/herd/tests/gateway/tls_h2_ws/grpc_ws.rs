//! gRPC passthrough with trailers (tonic on both sides) and WebSocket upgrades through the
//! gateway.

use super::*;

// ---------------------------------------------------------------- gRPC

/// gRPC messages as raw bytes: no protobuf, no code generation.
#[derive(Clone, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// Unary: echoes the message, or fails with NOT_FOUND for "missing".
struct Echo;

impl tonic::server::UnaryService<Bytes> for Echo {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, tonic::Status>>;
    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let msg = req.into_inner();
        std::future::ready(if msg == "missing" {
            Err(tonic::Status::not_found("no such thing"))
        } else {
            Ok(tonic::Response::new(msg))
        })
    }
}

/// Server streaming: N numbered messages, then an error status carried in the trailers
/// (after data), with custom trailer metadata.
struct Count;

type CountStream = futures_util::stream::Iter<std::vec::IntoIter<Result<Bytes, tonic::Status>>>;

impl tonic::server::ServerStreamingService<Bytes> for Count {
    type Response = Bytes;
    type ResponseStream = CountStream;
    type Future = std::future::Ready<Result<tonic::Response<CountStream>, tonic::Status>>;
    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let n: usize = String::from_utf8_lossy(&req.into_inner())
            .parse()
            .unwrap_or(0);
        let mut items: Vec<Result<Bytes, tonic::Status>> = (0..n)
            .map(|i| Ok(Bytes::from(format!("msg-{i}"))))
            .collect();
        let mut trailers = tonic::metadata::MetadataMap::new();
        trailers.insert("x-sent", n.to_string().parse().unwrap());
        items.push(Err(tonic::Status::with_metadata(
            tonic::Code::Aborted,
            format!("done after {n}"),
            trailers,
        )));
        std::future::ready(Ok(tonic::Response::new(futures_util::stream::iter(items))))
    }
}

/// A gRPC server speaking HTTP/2 with prior knowledge (h2c). It refuses calls that lost
/// `te: trailers` on the way, as strict gRPC servers do.
fn start_grpc_server() -> (SocketAddr, BackgroundRuntime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let te_ok = req.headers().get("te").is_some_and(|v| v == "trailers");
                        let resp = if !te_ok {
                            tonic::Status::failed_precondition(
                                "te: trailers did not reach the server",
                            )
                            .into_http()
                        } else {
                            match req.uri().path() {
                                "/test.Echo/Unary" => {
                                    tonic::server::Grpc::new(RawCodec).unary(Echo, req).await
                                }
                                "/test.Echo/Count" => {
                                    tonic::server::Grpc::new(RawCodec)
                                        .server_streaming(Count, req)
                                        .await
                                }
                                _ => tonic::Status::unimplemented("no such method").into_http(),
                            }
                        };
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, BackgroundRuntime(Some(rt)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_streaming_keep_trailers() {
    let (grpc_addr, _grpc_rt) = start_grpc_server();
    let gw = Gateway::start(&format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nbackend = \"grpc\"\n\n\
         [backends.grpc]\nprotocol = \"h2c\"\nservers = [ {{ addr = \"{grpc_addr}\" }} ]\n\
         [backends.grpc.health]\nkind = \"http\"\npath = \"/test.Echo/Unary\"\ninterval = \"100ms\"\n"
    ));
    let web = gw.listeners["web"];
    // h2c with prior knowledge, as gRPC clients do on cleartext.
    let channel = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<tonic::body::Body>();
    let mut grpc =
        tonic::client::Grpc::with_origin(channel, format!("http://{web}").parse().unwrap());
    let unary = http::uri::PathAndQuery::from_static("/test.Echo/Unary");
    let count = http::uri::PathAndQuery::from_static("/test.Echo/Count");

    // Several calls on the one multiplexed connection to the server.
    for i in 0..3 {
        grpc.ready().await.unwrap();
        let msg = Bytes::from(format!("hello {i}"));
        let resp = grpc
            .unary(tonic::Request::new(msg.clone()), unary.clone(), RawCodec)
            .await
            .unwrap_or_else(|s| panic!("unary call failed: {s:?}"));
        assert_eq!(resp.into_inner(), msg);
    }
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            tonic::Request::new(Bytes::from_static(b"missing")),
            unary.clone(),
            RawCodec,
        )
        .await
        .expect_err("NOT_FOUND expected");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "no such thing");

    // Server streaming: every message, then the status and metadata from the trailers.
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(Bytes::from_static(b"5")),
            count,
            RawCodec,
        )
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    let status = loop {
        match stream.message().await {
            Ok(Some(m)) => got.push(String::from_utf8_lossy(&m).into_owned()),
            Ok(None) => panic!("stream ended without its status; got {got:?}"),
            Err(s) => break s,
        }
    };
    assert_eq!(got, ["msg-0", "msg-1", "msg-2", "msg-3", "msg-4"]);
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert_eq!(status.message(), "done after 5");
    assert_eq!(status.metadata().get("x-sent").unwrap(), "5");

    // The HTTP health check speaks HTTP/2 to the h2c server (HTTP/1.1 would fail three
    // checks, 100 ms apart, and take it down).
    let st = eventually(
        "three health checks ran",
        Duration::from_secs(10),
        || async {
            let st = gw.status(&client()).await;
            let checks = &st["backends"]["grpc"]["servers"][0]["health_checks"];
            let ran = checks["passed"].as_u64()? + checks["failed"].as_u64()?;
            (ran >= 3).then_some(st)
        },
    )
    .await;
    let server = &st["backends"]["grpc"]["servers"][0];
    assert_eq!(server["health_checks"]["failed"], 0, "{st}");
    assert_eq!(server["healthy"], true, "{st}");
}

/// A server's own runtime, shut down without blocking when the test ends (a plain drop
/// inside the test's async context panics).
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

// ---------------------------------------------------------------- WebSocket

/// A WebSocket echo server (tungstenite): every text or binary message comes back.
fn start_ws_echo() -> (SocketAddr, BackgroundRuntime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, BackgroundRuntime(Some(rt)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_round_trips() {
    use tokio_tungstenite::tungstenite::Message;
    let (ws_addr, _ws_rt) = start_ws_echo();
    let app = Backend::start("app");
    let gw = Gateway::start(&format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\npath_prefix = \"/ws\"\nbackend = \"ws\"\n\n\
         [[routes]]\nbackend = \"app\"\n\n\
         [backends.ws]\nservers = [ {{ addr = \"{ws_addr}\" }} ]\n\
         [backends.app]\nservers = [ {{ addr = \"{}\" }} ]\n",
        app.addr
    ));
    let web = gw.listeners["web"];
    for round in 0..2 {
        let tcp = TcpStream::connect(web).await.unwrap();
        let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{web}/ws/chat"), tcp)
            .await
            .unwrap_or_else(|e| panic!("WebSocket handshake through the gateway: {e}"));
        assert_eq!(resp.status(), 101);
        for i in 0..5 {
            let text = format!("round {round} message {i}");
            ws.send(Message::text(text.clone())).await.unwrap();
            let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("echo in time")
                .unwrap()
                .unwrap();
            assert_eq!(back, Message::text(text));
        }
        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back, Message::binary(vec![0u8, 1, 2, 255]));
        ws.close(None).await.unwrap();
    }
    // Ordinary requests on the same listener are unaffected.
    let r = get(&client(), &gw.url("/")).await.unwrap();
    assert_eq!(r.body, "app");
}
