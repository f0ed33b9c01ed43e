//! Users, sessions, CSRF tokens and login rate limiting. State is in memory: a restart logs
//! everybody out, which is acceptable for an appliance console and keeps secrets off disk.

use crate::config::{Auth as AuthCfg, Role, User};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Hex of `n` random bytes from the OS generator.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random generator");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// argon2id with the crate's default (OWASP) parameters and a random salt.
pub fn hash_password(pw: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("random salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `pw` matches the PHC string (false for a malformed one).
pub fn verify_password(pw: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(pw.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

#[derive(Clone, Debug)]
pub struct Session {
    pub username: String,
    pub role: Role,
    pub csrf: String,
    pub expires: Instant,
}

impl Session {
    /// Constant-time check of a presented CSRF token.
    pub fn csrf_ok(&self, presented: &str) -> bool {
        self.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// Why a login was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    Wrong,
    Locked { retry_after_secs: u64 },
}

/// All auth state of one server.
pub struct Auth {
    users: Vec<User>,
    cfg: AuthCfg,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    /// A hash to verify against for unknown users, so both cases take the same time.
    dummy_hash: String,
}

impl Auth {
    pub fn new(users: Vec<User>, cfg: AuthCfg) -> Auth {
        let dummy_hash = hash_password(&random_hex(16)).unwrap_or_default();
        Auth {
            users,
            cfg,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            dummy_hash,
        }
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.cfg.session_ttl_secs)
    }

    /// Seconds until the username and the address may try again, if either is locked out.
    fn locked(&self, keys: &[String], now: Instant) -> Option<u64> {
        let window = Duration::from_secs(self.cfg.lockout_window_secs);
        let mut f = self.failures.lock().unwrap();
        let mut wait = None;
        for k in keys {
            if let Some(v) = f.get_mut(k) {
                v.retain(|t| now.duration_since(*t) < window);
                if v.len() >= self.cfg.max_failures as usize {
                    let oldest = v[0];
                    let left = window.saturating_sub(now.duration_since(oldest));
                    let secs = left.as_secs().max(1);
                    wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
                }
            }
        }
        wait
    }

    fn fail(&self, keys: &[String], now: Instant) {
        let mut f = self.failures.lock().unwrap();
        if f.len() > 100_000 {
            // Bounded memory under a spray of usernames: forget the oldest record of all.
            f.clear();
        }
        for k in keys {
            f.entry(k.clone()).or_default().push(now);
        }
    }

    /// Checks the password (argon2: call from a blocking thread) and opens a session.
    /// Returns the session id and the session.
    pub fn login(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<(String, Session), LoginError> {
        let now = Instant::now();
        let keys = [format!("u:{username}"), format!("a:{client}")];
        if let Some(retry_after_secs) = self.locked(&keys, now) {
            return Err(LoginError::Locked { retry_after_secs });
        }
        let user = self.users.iter().find(|u| u.name == username);
        let hash = user.map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let ok = verify_password(password, hash) && user.is_some();
        let Some(user) = user.filter(|_| ok) else {
            self.fail(&keys, now);
            return Err(LoginError::Wrong);
        };
        let s = Session {
            username: user.name.clone(),
            role: user.role,
            csrf: random_hex(32),
            expires: now + self.ttl(),
        };
        let id = random_hex(32);
        let mut sessions = self.sessions.lock().unwrap();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(id.clone(), s.clone());
        Ok((id, s))
    }

    /// The live session of this id.
    pub fn session(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap();
        match sessions.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn logout(&self, id: &str) {
        self.sessions.lock().unwrap().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(max_failures: u32) -> Auth {
        let users = vec![User {
            name: "alice".into(),
            role: Role::Admin,
            password_hash: hash_password("right").unwrap(),
        }];
        let cfg = AuthCfg {
            max_failures,
            ..AuthCfg::default()
        };
        Auth::new(users, cfg)
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("pw").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("pw", &h));
        assert!(!verify_password("pw2", &h));
        assert!(!verify_password("pw", "garbage"));
    }

    #[test]
    fn logout_ends_the_session_and_ids_differ() {
        let a = auth(5);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (id, s) = a.login("alice", "right", ip).unwrap();
        let (id2, _) = a.login("alice", "right", ip).unwrap();
        assert_ne!(id, id2);
        assert_eq!(id.len(), 64);
        assert!(s.csrf_ok(&s.csrf) && !s.csrf_ok("x"));
        assert!(a.session(&id).is_some());
        a.logout(&id);
        assert!(a.session(&id).is_none());
        assert!(a.session(&id2).is_some());
    }

    #[test]
    fn repeated_failures_lock_out_even_the_right_password() {
        let a = auth(3);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(
                a.login("alice", "wrong", ip).unwrap_err(),
                LoginError::Wrong
            );
        }
        assert!(matches!(
            a.login("alice", "right", ip),
            Err(LoginError::Locked { .. })
        ));
        assert_eq!(
            a.login("nobody", "x", "127.0.0.3".parse().unwrap())
                .unwrap_err(),
            LoginError::Wrong
        );
    }
}
