//! ClickHouse 26.9's SQL engine run in process by chdb (Python; scripts/setup.sh installs
//! `chdb-core`): how the tests check SQL against a current server, since Debian packages only
//! 18.16. Tables created this way stay empty (there is no HTTP server to insert through).

use std::process::{Command, Stdio};

/// Whether `python3` can import chdb (tests skip with a message otherwise).
pub fn available() -> bool {
    Command::new("python3")
        .args(["-c", "import chdb"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const SCRIPT: &str = r#"
import sys
from chdb import session
qs = open(sys.argv[1], encoding="utf-8").read().split("\0")
show = int(sys.argv[3])
s = session.Session(sys.argv[2])
print("version", str(s.query("SELECT version()", "TSVRaw")).strip())
n = 0
for i, q in enumerate(qs):
    try:
        r = s.query(q, "TSVRaw")
    except Exception as e:
        print("FAILED:", q, "...", e)
        sys.exit(1)
    if i >= len(qs) - show:
        print(str(r))
    n += 1
print("ran", n)
"#;

/// Runs `statements` in order in a fresh session, then `show` (their results printed, TSV).
/// Ok(stdout: `version ...`, the shown results, `ran N`), or Err naming the failed statement.
pub fn run(statements: &[String], show: &[String]) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let input = dir.path().join("statements");
    let all: Vec<&str> = statements.iter().chain(show).map(String::as_str).collect();
    std::fs::write(&input, all.join("\0")).map_err(|e| e.to_string())?;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&input)
        .arg(dir.path().join("chdb"))
        .arg(show.len().to_string())
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}\n{}", String::from_utf8_lossy(&out.stderr)))
    }
}
