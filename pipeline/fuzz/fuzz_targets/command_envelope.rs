//! A sensor's command verifier over arbitrary bytes from the COMMANDS stream: never a panic.
//! Half the inputs are taken as whole envelopes (nothing unsigned by the key may pass: the
//! fuzzer cannot forge Ed25519); the other half as a command payload that the fuzzer signs with
//! the right key, so the command parser and the expiry, sensor and nonce checks are reached.
#![no_main]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use libfuzzer_sys::fuzz_target;
use pipeline_command::{Envelope, Verifier};

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut v = Verifier::new(key.verifying_key(), "s1");
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        assert!(v.verify(rest, 1_000).is_err());
        return;
    }
    let env = Envelope {
        payload: B64.encode(rest),
        signature: B64.encode(key.sign(rest).to_bytes()),
    };
    let bytes = serde_json::to_vec(&env).expect("envelope");
    if let Ok(cmd) = v.verify(&bytes, 1_000) {
        assert_eq!(cmd.sensor_id, "s1");
        assert!(cmd.expires_at_ms > 1_000);
        assert!(v.verify(&bytes, 1_000).is_err(), "a replay passed");
    }
});
