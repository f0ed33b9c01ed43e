//! Reading back what the sensor published to JetStream, for the NATS and fault tests.

#![allow(dead_code)]

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use serde_json::Value;

use super::servers::Nats;

/// Every message of the stream on `sensor.<id>.>`: (subject, msg id, payload).
pub fn read_stream(n: &Nats, id: &str) -> Vec<(String, String, Value)> {
    let opts = async_nats::ConnectOptions::with_user_and_password(
        Nats::USER.into(),
        Nats::PASSWORD.into(),
    );
    read_stream_with(n, opts, id)
}

/// [`read_stream`], connecting with `opts`.
pub fn read_stream_with(
    n: &Nats,
    opts: async_nats::ConnectOptions,
    id: &str,
) -> Vec<(String, String, Value)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = opts.connect(n.url()).await.unwrap();
        let js = jetstream::new(client);
        let stream = js.get_stream("SENSOR").await.unwrap();
        let c = stream
            .create_consumer(consumer::pull::Config {
                filter_subject: format!("sensor.{id}.>"),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::new();
        loop {
            let mut batch = c
                .fetch()
                .max_messages(10_000)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .unwrap();
            let mut got = 0;
            while let Some(m) = batch.next().await {
                let m = m.unwrap();
                got += 1;
                let mid = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                out.push((
                    m.subject.to_string(),
                    mid,
                    serde_json::from_slice(&m.payload).unwrap(),
                ));
            }
            if got == 0 {
                break;
            }
        }
        out
    })
}
