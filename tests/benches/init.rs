//! `make bench`: cold start of one function on this machine. A minimal Lambda Runtime API
//! (the emulator) serves one real API Gateway event; the figures are the time from starting
//! the optimised `get-member` binary to its first poll (init) and to its answer (init + the
//! first request, which makes one DynamoDB call). DynamoDB Local sits behind a TLS
//! terminator, so the function speaks HTTPS as on AWS, and each run is made twice,
//! interleaved: with the connection opened during init (`DynamoStore::connect`, the default)
//! and without (`DYNAMODB_CONNECT_AT_INIT=false`), where the first request pays the handshake.

use members_tests::{free_port, workspace_root, DynamoLocal, TABLE};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 10;

fn main() {
    members_tests::bench_main(run);
}

/// One HTTP request: (request line, body).
fn read_request(stream: &mut TcpStream) -> Result<(String, Vec<u8>), String> {
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).map_err(|e| e.to_string())?;
        let header = header.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(v) = header.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if header.starts_with("transfer-encoding:") && header.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).map_err(|e| e.to_string())?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    }
    Ok((line, body))
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(), String> {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    stream
        .write_all(out.as_bytes())
        .and_then(|_| stream.write_all(body))
        .map_err(|e| e.to_string())
}

/// One cold start: the binary started, its first poll, the event, its answer.
struct Start {
    polled: Duration,
    answered: Duration,
}

fn cold_start(
    binary: &std::path::Path,
    event: &[u8],
    endpoint: &str,
    ca_file: &std::path::Path,
    connect_at_init: bool,
) -> Result<Start, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let api = listener.local_addr().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "get-member")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
        .env("SSL_CERT_FILE", ca_file)
        .env("DYNAMODB_CONNECT_AT_INIT", connect_at_init.to_string())
        .env("TABLE_NAME", TABLE)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let result = serve_one(&listener, event, started);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn serve_one(listener: &TcpListener, event: &[u8], started: Instant) -> Result<Start, String> {
    let (mut first, _) = listener.accept().map_err(|e| e.to_string())?;
    let (line, _) = read_request(&mut first)?;
    let polled = started.elapsed();
    if !line.contains("/invocation/next") {
        return Err(format!("unexpected first call: {line}"));
    }
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis()
        + 10_000;
    respond(
        &mut first,
        "200 OK",
        &[
            ("lambda-runtime-aws-request-id", "bench-1".into()),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:eu-west-1:123456789012:function:get-member".into(),
            ),
            ("content-type", "application/json".into()),
        ],
        event,
    )?;
    // The answer may come on the same connection or a new one.
    let mut answer = first;
    let (line, body) = match read_request(&mut answer) {
        Ok(r) if !r.0.is_empty() => r,
        _ => {
            let (mut next, _) = listener.accept().map_err(|e| e.to_string())?;
            let r = read_request(&mut next)?;
            answer = next;
            r
        }
    };
    let answered = started.elapsed();
    if !line.contains("/bench-1/response") {
        return Err(format!(
            "unexpected answer: {line} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let text = String::from_utf8_lossy(&body);
    if !text.contains("401") {
        return Err(format!(
            "expected the event's unknown key to get a 401: {text}"
        ));
    }
    respond(&mut answer, "202 Accepted", &[], b"")?;
    Ok(Start { polled, answered })
}

async fn run() -> Result<(), String> {
    let smoke = members_tests::bench_smoke();
    let runs = if smoke { 2 } else { RUNS };
    let root = workspace_root();
    // The optimised binary; in smoke mode (make test) the debug one `make test` built.
    let binary = if smoke {
        root.join("target/debug/get-member")
    } else {
        let built = Command::new("cargo")
            .args(["build", "--profile", "bench", "-p", "get-member"])
            .current_dir(&root)
            .status()
            .map_err(|e| e.to_string())?;
        if !built.success() {
            return Err("could not build get-member".into());
        }
        root.join("target/release/get-member")
    };
    if !binary.exists() {
        return Err(format!("{} is not built", binary.display()));
    }
    let dir = std::env::temp_dir().join(format!("members-bench-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dynamo = DynamoLocal::start(free_port()?, None, &dir.join("dynamodb.log"))?;
    // The harness's patient client: DynamoDB Local's first call can take seconds.
    let client = members_tests::Stack::harness_client(&dynamo.endpoint()).await;
    shared::store::DynamoStore::new(client, TABLE)
        .create_table()
        .await
        .map_err(|e| format!("{e:?}"))?;
    // HTTPS to DynamoDB, as on AWS: a TLS terminator in front of DynamoDB Local.
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], dynamo.port));
    let tls = members_tests::tls::TlsTerminator::start(upstream, &dir).await?;
    let event = std::fs::read(root.join("events/get-member.json")).map_err(|e| e.to_string())?;

    // Interleaved, so both modes see the same machine.
    let (mut early, mut late) = (Vec::new(), Vec::new());
    let (endpoint, ca) = (tls.endpoint(), tls.ca_file.clone());
    let mut handshakes = [0usize; 2];
    for _ in 0..runs {
        for (mode, (connect, out)) in [(true, &mut early), (false, &mut late)]
            .into_iter()
            .enumerate()
        {
            let before = tls.handshakes.load(std::sync::atomic::Ordering::SeqCst);
            let (binary, event, endpoint, ca) =
                (binary.clone(), event.clone(), endpoint.clone(), ca.clone());
            let start = tokio::task::spawn_blocking(move || {
                cold_start(&binary, &event, &endpoint, &ca, connect)
            })
            .await
            .map_err(|e| e.to_string())??;
            out.push(start);
            handshakes[mode] += tls.handshakes.load(std::sync::atomic::Ordering::SeqCst) - before;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = |starts: &[Start], f: fn(&Start) -> Duration| {
        let mut v: Vec<Duration> = starts.iter().map(f).collect();
        v.sort();
        ms(v[v.len() / 2])
    };
    println!(
        "get-member cold start on this machine (x86_64, {}), HTTPS to DynamoDB Local through a TLS terminator, {runs} runs each, median:",
        if smoke { "debug build, smoke run" } else { "bench profile" }
    );
    println!(
        "  {:<52} {:>14} {:>14}",
        "", "connect at init", "connect later"
    );
    for (label, f) in [
        (
            "process start -> first poll (init)",
            (|s: &Start| s.polled) as fn(&Start) -> Duration,
        ),
        ("first poll -> answer (the first request)", |s: &Start| {
            s.answered - s.polled
        }),
        ("process start -> first answer", |s: &Start| s.answered),
    ] {
        println!(
            "  {label:<52} {:>11.1} ms {:>11.1} ms",
            median(&early, f),
            median(&late, f)
        );
    }
    println!(
        "  {:<52} {:>14.1} {:>14.1}",
        "TLS handshakes per cold start",
        handshakes[0] as f64 / runs as f64,
        handshakes[1] as f64 / runs as f64
    );
    println!(
        "  first request, connect at init / connect later: {:.2}",
        median(&early, |s| s.answered - s.polled) / median(&late, |s| s.answered - s.polled)
    );
    drop(tls);
    drop(dynamo);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
