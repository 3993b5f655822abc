//! The custom EventBridge bus (template.yaml's `EventBus`): each event as one entry,
//! `source` = `members-api`, `detail-type` = the event type, `detail` = the CloudEvent.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use shared::consumer::Publisher;
use shared::events::{self, CloudEvent};

/// PutEvents takes at most 10 entries and 256 KB in all per call.
const ENTRIES_PER_CALL: usize = 10;

pub struct Bus {
    client: Client,
    name: String,
}

impl Bus {
    /// `EVENT_BUS_NAME`, and the client from what Lambda puts in the environment.
    pub fn from_env() -> Result<Self, String> {
        use aws_sdk_eventbridge::config::BehaviorVersion;
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let name = var("EVENT_BUS_NAME").ok_or("EVENT_BUS_NAME is not set")?;
        let (region, credentials) = shared::store::dynamo::lambda_identity()?;
        let mut config = aws_sdk_eventbridge::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .timeout_config(shared::store::dynamo::timeouts())
            .http_client(shared::store::dynamo::https_client());
        if let Some(url) = var("AWS_ENDPOINT_URL_EVENTBRIDGE") {
            config = config.endpoint_url(url);
        }
        Ok(Bus {
            client: Client::from_conf(config.build()),
            name,
        })
    }

    fn entry(&self, event: &CloudEvent) -> (PutEventsRequestEntry, usize) {
        let (detail, size) = events::bus_detail(event);
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.name)
            .source(events::SOURCE)
            .detail_type(&event.kind)
            .detail(detail)
            .build();
        (entry, size)
    }
}

impl Publisher for Bus {
    async fn publish(&self, events: &[CloudEvent]) -> usize {
        let mut done = 0;
        while done < events.len() {
            // As many entries as fit one call, in order.
            let (mut batch, mut bytes) = (Vec::new(), 0);
            for event in &events[done..] {
                let (entry, size) = self.entry(event);
                if !batch.is_empty()
                    && (batch.len() == ENTRIES_PER_CALL || bytes + size > events::PUSH_MAX_BYTES)
                {
                    break;
                }
                bytes += size;
                batch.push(entry);
            }
            let sent = batch.len();
            let out = match self
                .client
                .put_events()
                .set_entries(Some(batch))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_eventbridge::error::DisplayErrorContext(&e), "PutEvents failed");
                    return done;
                }
            };
            // Entries are answered in order; the first refused one ends the prefix.
            let ok = out
                .entries()
                .iter()
                .take_while(|e| e.error_code().is_none())
                .count()
                .min(sent);
            if ok < sent {
                let code = out.entries().get(ok).and_then(|e| e.error_code());
                tracing::warn!(?code, "EventBridge refused an entry");
                return done + ok;
            }
            done += sent;
        }
        done
    }
}
