//! `hitcounter healthcheck`: a GET of /healthz over plain HTTP/1.1, for
//! container images with no shell and no curl. Written by hand because it is
//! ten lines and keeps an HTTP client out of the binary.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// True when `url` answers with status 200 within `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs can be probed, got {url}"))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let exchange = async {
        let mut stream = TcpStream::connect(authority).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        anyhow::Ok(head)
    };
    let head = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer within {timeout:?}"))??;
    let status = std::str::from_utf8(&head[9..12]).unwrap_or("???");
    if head.starts_with(b"HTTP/1.") && status == "200" {
        Ok(())
    } else {
        Err(anyhow::anyhow!("{url} answered status {status}"))
    }
}
