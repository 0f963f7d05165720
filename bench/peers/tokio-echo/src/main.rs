//! The tokio peer for `make bench`: the canonical tokio echo server (a task
//! per connection, a 4 KiB buffer per task), on a current-thread runtime so
//! it uses one core like one echod worker.
//!
//! Usage: tokio-echo [ADDR]   (default 127.0.0.1:0). Prints
//! "listening on ADDR (tcp)" on stderr.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on {} (tcp)", listener.local_addr()?);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut socket, _) = match accepted {
                    Ok(pair) => pair,
                    Err(_) => continue,
                };
                let _ = socket.set_nodelay(true);
                tokio::spawn(async move {
                    // tokio's own echo example reads into 1 KiB; 4 KiB keeps
                    // large messages cheap without charging idle tasks 64 KiB.
                    let mut buf = vec![0u8; 4 * 1024];
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if socket.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
