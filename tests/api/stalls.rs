//! Bodies that stall: hundreds of uploads that stop sending must neither
//! starve database requests nor hold the service forever.

use crate::artifacts::pending_image;
use crate::support::{id, TestApp, ADMIN_TOKEN};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Opens a connection, sends the head of a 1 MiB artifact upload and 1 KiB
/// of its body, then nothing: the connection, to read the answer from.
async fn stalled_upload(port: u16, image: &str) -> actix_rt::net::TcpStream {
    let mut stream = actix_rt::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    let digest = format!("sha256:{}", "0".repeat(64));
    let head = format!(
        "PUT /v1/images/{image}/artifact?digest={digest} HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 1048576\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head sent");
    stream.write_all(&[b'x'; 1024]).await.expect("1 KiB sent");
    stream
}

/// The status line of the answer on `stream`, if one comes within `wait`.
async fn answer(stream: &mut actix_rt::net::TcpStream, wait: Duration) -> Option<String> {
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, stream.read(&mut buffer))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
    Some(text)
}

#[actix_rt::test]
async fn stalled_uploads_neither_starve_the_database_nor_hang_forever() {
    let app = TestApp::spawn_with(|c| {
        c.max_uploads = 100;
        c.body_idle_timeout = Duration::from_secs(2);
    })
    .await;
    let image = id(&pending_image(&app).await);
    let port: u16 = app
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mut stalled = Vec::new();
    for _ in 0..300 {
        stalled.push(stalled_upload(port, &image).await);
    }
    // Database requests are answered at once all the same.
    for path in ["/readyz", "/v1/projects", &format!("/v1/images/{image}")] {
        let asked = Instant::now();
        let reply = app.raw(awc::http::Method::GET, path, &[], Vec::new()).await;
        reply.assert_status(200);
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{path} took {:?}",
            asked.elapsed()
        );
    }
    // Beyond the 100 upload slots: 503 with Retry-After, straight away.
    let mut refused = 0;
    let mut timed_out = 0;
    for stream in &mut stalled {
        match answer(stream, Duration::from_secs(6)).await {
            Some(text) if text.starts_with("HTTP/1.1 503") => {
                assert!(
                    text.to_ascii_lowercase().contains("retry-after: 1"),
                    "{text}"
                );
                refused += 1;
            }
            Some(text) if text.starts_with("HTTP/1.1 408") => {
                assert!(text.contains("request_timeout"), "{text}");
                timed_out += 1;
            }
            other => panic!("a stalled upload got {other:?}"),
        }
    }
    assert_eq!(
        (refused, timed_out),
        (200, 100),
        "503 beyond the slots, 408 for the rest"
    );
    // Nothing was left behind in the store's staging area.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.objects("tmp").await.is_empty() {
        assert!(Instant::now() < deadline, "staged files left behind");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}
