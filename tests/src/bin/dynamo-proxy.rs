//! `make dev` with `MEMBERS_PLAY_CONFLICTS=1`: the tests' proxy (src/stale.rs) in front of
//! DynamoDB Local, so that the local API meets what AWS does and DynamoDB Local hides:
//! eventually consistent reads and transaction conflicts (`MEMBERS_TX_HOLD_MS`, default 20).
//!
//! `dynamo-proxy <DynamoDB Local port> <port file>`: listens on a free port of 127.0.0.1,
//! writes it to the port file, prints the conflict tallies every minute something changed.

use members_tests::stale::StaleProxy;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(upstream), Some(port_file)) =
        (args.get(1).and_then(|p| p.parse::<u16>().ok()), args.get(2))
    else {
        eprintln!("usage: dynamo-proxy <DynamoDB Local port> <port file>");
        std::process::exit(2);
    };
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], upstream));
    let proxy = match StaleProxy::start(upstream).await {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("dynamo-proxy: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = std::fs::write(port_file, proxy.port.to_string()) {
        eprintln!("dynamo-proxy: cannot write {port_file}: {e}");
        std::process::exit(1);
    }
    let mut last = String::new();
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let now = proxy.conflicts.summary();
        if now != last {
            eprintln!("==> {now}");
            last = now;
        }
    }
}
