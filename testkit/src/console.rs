//! ClickHouse users for the console's tests: `console`, read-only (profile with `readonly = 2`
//! so that per-query limits may be set), and `console_writer`, limited to the `console`
//! database (its own tables). Added as `users.d/console.xml` beside the test server's
//! `users.xml`, which the server merges and reloads by itself (18.16 has no `CREATE USER`).

use crate::servers::ClickHouse;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const READER: &str = "console";
pub const READER_PASSWORD: &str = "console-ro-pw";
pub const WRITER: &str = "console_writer";
pub const WRITER_PASSWORD: &str = "console-rw-pw";

/// The users.d snippet (also the one the README documents for operators).
pub fn users_xml() -> String {
    format!(
        r#"<?xml version="1.0"?>
<yandex>
  <profiles><console_ro><readonly>2</readonly></console_ro></profiles>
  <users>
    <{READER}><password>{READER_PASSWORD}</password><networks><ip>127.0.0.1</ip></networks><profile>console_ro</profile><quota>default</quota></{READER}>
    <{WRITER}><password>{WRITER_PASSWORD}</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota><allow_databases><database>console</database></allow_databases></{WRITER}>
  </users>
</yandex>
"#
    )
}

/// Runs `sql` as `user` over HTTP; the body or the server's error.
pub fn query_as(ch: &ClickHouse, user: &str, password: &str, sql: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", ch.http_port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let req = format!(
        "POST /?user={user}&password={password} HTTP/1.0\r\nHost: 127.0.0.1\r\n\
         Content-Length: {}\r\n\r\n{sql}",
        sql.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    if head.contains(" 200 ") {
        Ok(body.to_string())
    } else {
        Err(body.to_string())
    }
}

/// Adds the two users and waits until the server has loaded them.
pub fn add_users(ch: &ClickHouse) {
    let dir = ch.dir.path().join("users.d");
    std::fs::create_dir_all(&dir).expect("users.d");
    std::fs::write(dir.join("console.xml"), users_xml()).expect("console.xml");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if query_as(ch, WRITER, WRITER_PASSWORD, "SELECT 1").is_ok()
            && query_as(ch, READER, READER_PASSWORD, "SELECT 1").is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("clickhouse did not load users.d/console.xml within 60 s");
}
