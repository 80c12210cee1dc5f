//! A real `redis-server` on a free port, started and stopped by the test.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process; killed when dropped.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    persistent: bool,
    extra: Vec<String>,
}

impl RedisServer {
    /// A server without persistence.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// A server that keeps its data across [`RedisServer::restart`]
    /// (append-only file, fsync on every write).
    pub fn start_persistent() -> Self {
        Self::launch(true)
    }

    /// A server without persistence, started with `extra` arguments too
    /// (TLS ports, ACL users).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::launch_with(false, extra.iter().map(|a| (*a).to_owned()).collect())
    }

    fn launch(persistent: bool) -> Self {
        Self::launch_with(persistent, Vec::new())
    }

    fn launch_with(persistent: bool, extra: Vec<String>) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self {
            port,
            dir,
            child: None,
            persistent,
            extra,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}); install it: apt-get install redis-server")
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection())
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A new synchronous connection.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Stops the server (SIGTERM: a clean shutdown that flushes the
    /// append-only file) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Where the server keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One stream entry: id and fields in order.
pub type Entry = (String, Vec<(String, String)>);

/// `XRANGE stream - +`.
pub fn xrange(c: &mut redis::Connection, stream: &str) -> Vec<Entry> {
    let reply: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(c)
        .unwrap();
    reply
}

/// `XADD stream * fields…`; returns the id.
/// The ids of `stream`'s entries, oldest first.
pub fn xrange_ids(c: &mut redis::Connection, stream: &str) -> Vec<String> {
    xrange(c, stream).into_iter().map(|e| e.0).collect()
}

pub fn xadd(c: &mut redis::Connection, stream: &str, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (f, v) in fields {
        cmd.arg(*f).arg(*v);
    }
    cmd.query(c).unwrap()
}

/// The number of entries pending in `group` on `stream` (0 if the group does
/// not exist).
pub fn pending(c: &mut redis::Connection, stream: &str, group: &str) -> usize {
    let reply: redis::RedisResult<redis::Value> =
        redis::cmd("XPENDING").arg(stream).arg(group).query(c);
    match reply {
        Ok(redis::Value::Array(parts)) => match parts.first() {
            Some(redis::Value::Int(n)) => *n as usize,
            _ => 0,
        },
        _ => 0,
    }
}

/// The value of `field` in an entry.
pub fn field<'e>(entry: &'e Entry, name: &str) -> Option<&'e str> {
    entry
        .1
        .iter()
        .find(|(f, _)| f == name)
        .map(|(_, v)| v.as_str())
}
