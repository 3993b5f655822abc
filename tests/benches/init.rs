//! `make bench`: cold start of one function on this machine. A minimal Lambda Runtime API
//! (the emulator) serves one real API Gateway event; the figure is the time from starting
//! the optimised `get-member` binary to its answer reaching the emulator (init + first
//! request, which makes one DynamoDB call to DynamoDB Local), and to its first poll.

use members_tests::{free_port, workspace_root, DynamoLocal, TABLE};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 10;

fn main() {
    members_tests::bench_main(|| async { run() });
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

fn run() -> Result<(), String> {
    let root = workspace_root();
    let binary = root.join("target/release/get-member");
    let built = Command::new("cargo")
        .args(["build", "--profile", "bench", "-p", "get-member"])
        .current_dir(&root)
        .status()
        .map_err(|e| e.to_string())?;
    if !built.success() || !binary.exists() {
        return Err(format!("could not build {}", binary.display()));
    }
    let dir = std::env::temp_dir().join(format!("members-bench-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dynamo = DynamoLocal::start(free_port()?, None, &dir.join("dynamodb.log"))?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = shared::store::DynamoStore::client_from_env(Some(&dynamo.endpoint())).await;
        shared::store::DynamoStore::new(client, TABLE)
            .create_table()
            .await
            .map_err(|e| format!("{e:?}"))
    })?;
    let event = std::fs::read(root.join("events/get-member.json")).map_err(|e| e.to_string())?;

    let (mut polled, mut answered) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let api = listener.local_addr().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut child = Command::new(&binary)
            .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "get-member")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_ENDPOINT_URL_DYNAMODB", dynamo.endpoint())
            .env("TABLE_NAME", TABLE)
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let (mut first, _) = listener.accept().map_err(|e| e.to_string())?;
        let (line, _) = read_request(&mut first)?;
        polled.push(started.elapsed());
        if !line.contains("/invocation/next") {
            return Err(format!("unexpected first call: {line}"));
        }
        respond(
            &mut first,
            "200 OK",
            &[
                ("lambda-runtime-aws-request-id", "bench-1".into()),
                (
                    "lambda-runtime-deadline-ms",
                    (std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_err(|e| e.to_string())?
                        .as_millis()
                        + 10_000)
                        .to_string(),
                ),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:eu-west-1:123456789012:function:get-member".into(),
                ),
                ("content-type", "application/json".into()),
            ],
            &event,
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
        answered.push(started.elapsed());
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
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(50));
    }
    polled.sort();
    answered.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("get-member cold start on this machine (x86_64, bench profile), {RUNS} runs, median:");
    println!(
        "  process start -> first poll of the Runtime API (init):      {:>7.1} ms",
        ms(polled[RUNS / 2])
    );
    println!(
        "  process start -> first answer (init + one DynamoDB call):   {:>7.1} ms",
        ms(answered[RUNS / 2])
    );
    drop(dynamo);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
